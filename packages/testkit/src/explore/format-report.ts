import {
  describePoint,
  formatTraceRegs,
  type ScheduleStep,
  type TraceEvent,
  traceStatusText,
} from '@tdxsim/tdx-module';
import type { ExploreFailure, ExploreResult } from './explore-types.js';

/** One trace event as a line of text (64-bit values as hex), the form traces are compared and printed in. */
export function formatTraceEvent(event: TraceEvent): string {
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
  return trace.map(formatTraceEvent).join('\n');
}

/**
 * The real choices of a run that departed from first-come order (a position other than 0), one line each: what ran,
 * and what it ran ahead of.
 */
export function describeChoices(steps: readonly ScheduleStep[]): string[] {
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

/** A failure as the lines a developer needs: what broke, the minimal schedule, the choices that made it, the replay. */
export function formatExploreFailure(result: ExploreResult, failure: ExploreFailure): string {
  const tail = failure.trace.slice(-12).map((event) => `    ${formatTraceEvent(event)}`);
  return [
    `exploreSchedules (${result.scheduler}, seed ${result.seed}): schedule #${failure.scheduleIndex} of ${result.schedulesRun} run failed (${result.distinctInterleavings} distinct interleavings seen)`,
    `  ${failure.kind}: ${failure.message}`,
    `  minimal schedule ${failure.schedule} (shrunk in ${failure.shrinkRuns} replays from ${failure.found})`,
    failure.choices.length === 0
      ? '  it departs from first-come order nowhere: the oldest waiting flow ran at every step'
      : `  where it departs from first-come order:\n${failure.choices.map((line) => `    ${line}`).join('\n')}`,
    `  last events of its trace (${failure.trace.length} in all):`,
    ...tail,
    `  replay: ${failure.replay}`,
  ].join('\n');
}
