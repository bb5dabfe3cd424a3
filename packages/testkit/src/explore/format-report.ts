import {
  describePoint,
  formatTraceRegs,
  type ScheduleStep,
  type TraceEvent,
  traceStatusText,
} from '@tdxsim/tdx-module';
import { TestkitError } from '../errors.js';
import { assertObjectArgument } from './explore-arguments.js';
import type { ExploreFailure, ExploreResult } from './explore-types.js';

function assertArrayArgument(argument: string, value: unknown): void {
  if (!Array.isArray(value))
    throw new TestkitError('INVALID_ARGUMENT', `${argument} must be an array`, argument);
}

/** One trace event as a line of text (64-bit values as hex), the form traces are compared and printed in. */
export function formatTraceEvent(event: TraceEvent): string {
  assertObjectArgument('event', event);
  const regs = formatTraceRegs;
  switch (event.kind) {
    case 'seamcall':
      return `${event.time} host ${event.leaf} ${regs(event.args)} -> ${traceStatusText(event)}`;
    case 'tdcall':
      return `${event.time} vcpu${event.vcpu} ${event.leaf} ${regs(event.args)} -> ${traceStatusText(event)}`;
    case 'td-exit':
      return `${event.time} vcpu${event.vcpu} exit: ${event.reason} ${regs(event.regs)}`;
    case 'vmm-reply':
      return `${event.time} vcpu${event.vcpu} vmm reply ${regs(event.regs)}`;
    default:
      return `${event.time} ${event.source}: ${event.text}`;
  }
}

/** A whole trace as text, one event per line: two runs interleaved the same way give the same bytes. */
export function traceText(trace: readonly TraceEvent[]): string {
  assertArrayArgument('trace', trace);
  return trace.map(formatTraceEvent).join('\n');
}

/**
 * The real choices of a run that departed from first-come order (a position other than 0), one line each: what ran,
 * and what it ran ahead of.
 */
export function describeChoices(steps: readonly ScheduleStep[]): string[] {
  assertArrayArgument('steps', steps);
  const lines: string[] = [];
  for (const step of steps) {
    if (step.passedOver === undefined || step.choice === 0) continue;
    const over = step.passedOver
      .slice(0, step.choice)
      .map((flow) => describePoint(flow.actor, flow.point))
      .join(', ');
    lines.push(`step ${step.index}: ${describePoint(step.actor, step.point)} ran ahead of ${over}`);
  }
  return lines;
}

/** Choice lines a printed report shows before it says how many more there are (`failure.choices` has them all). */
const MAX_CHOICE_LINES = 30;

/** A failure as the lines a developer needs: what broke, the minimal schedule, the choices that made it, the replay. */
export function formatExploreFailure(result: ExploreResult, failure: ExploreFailure): string {
  assertObjectArgument('result', result);
  assertObjectArgument('failure', failure);
  if (!Array.isArray(failure.trace) || !Array.isArray(failure.choices))
    throw new TestkitError(
      'INVALID_ARGUMENT',
      'failure must be an ExploreFailure (with trace and choices)',
      'failure',
    );
  const tail = failure.trace.slice(-12).map((event) => `    ${formatTraceEvent(event)}`);
  const shown = failure.choices.slice(0, MAX_CHOICE_LINES).map((line) => `    ${line}`);
  if (failure.choices.length > MAX_CHOICE_LINES)
    shown.push(`    … and ${failure.choices.length - MAX_CHOICE_LINES} more`);
  const shrunk = failure.shrinkComplete
    ? `minimal schedule ${failure.schedule} (shrunk in ${failure.shrinkRuns} replays from ${failure.found})`
    : `shrunk schedule ${failure.schedule} (shrinking stopped after ${failure.shrinkRuns} replays, its budget spent: it may not be minimal; shrunk from ${failure.found})`;
  return [
    `exploreSchedules (${result.scheduler}, seed ${result.seed}): schedule #${failure.scheduleIndex} of ${result.schedulesRun} run failed (${result.distinctInterleavings} distinct interleavings seen)`,
    `  ${failure.kind}: ${failure.message}`,
    `  ${shrunk}`,
    failure.choices.length === 0
      ? '  it departs from first-come order nowhere: the oldest waiting flow ran at every step'
      : `  where it departs from first-come order (${failure.choices.length} choices):\n${shown.join('\n')}`,
    `  last events of its trace (${failure.trace.length} in all):`,
    ...tail,
    `  replay: ${failure.replay}`,
  ].join('\n');
}
