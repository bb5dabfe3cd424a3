import { tdvmcallStatusName } from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { type AcceptOutcome, runAcceptRange } from '../accept/accept-range.js';
import type { CpuPort } from '../concurrency/cpu-port.js';
import type { GuestState } from '../guest-state.js';
import type { Interruption } from '../interruption.js';
import type { PageState } from '../ledger/page-ledger.js';
import { type MapGpaOutcome, runMapGpa } from '../map-gpa/map-gpa.js';
import type { GpaRange } from '../range.js';
import type {
  ConversionFailure,
  ConversionOutcome,
  PageOutcome,
  PageOutcomeRun,
} from './conversion-result.js';

const log = createDebug('tdxsim:guest:convert');
const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** How a conversion stopped short: a failure the module or the VMM answered, the caller's abort, or a lost vCPU. */
type Ending =
  | { readonly kind: 'failed'; readonly failure: ConversionFailure }
  | { readonly kind: 'interrupted'; readonly interruption: Interruption };

/**
 * One conversion of `range` (already locked exclusively by the caller) on `port`, Linux's way: to shared, MapGPA
 * after the pages stopped being private memory; to private, MapGPA then accept before use. Every page that needs
 * work is `converting` in the ledger from the start until the conversion ends, so nothing uses it meanwhile.
 * However it ends, every page of the request ends `converted` (its target state, checked by the module for
 * private pages), `unchanged` (no hypercall reached it: its state before) or `unknown` (quarantined). A TDCALL that
 * never comes back (a lost vCPU) is thrown again once the ledger is safe.
 */
export async function convertRange(
  state: GuestState,
  range: GpaRange,
  toShared: boolean,
  port: CpuPort,
  signal: AbortSignal | undefined,
): Promise<ConversionOutcome> {
  const { ledger, policy } = state;
  const target: PageState = toShared ? 'shared' : 'private-accepted';
  const original = ledger.runs(range);
  const needsMap = (s: PageState | undefined): boolean => (toShared ? s !== 'shared' : s === 'shared');
  const needsWork = (s: PageState | undefined): boolean =>
    needsMap(s) || (!toShared && s === 'private-unaccepted');
  // From here on the pages in work are not usable memory: no window between "still private" and "in conversion".
  for (const run of original) if (needsWork(run.state)) state.transition(run, 'converting');

  const outcome: PageOutcomeRun[] = [];
  let mapGpaCalls = 0;
  let acceptCalls = 0;
  const budget = policy.mapGpa.hypercallBudget;
  const record = (start: number, end: number, what: PageOutcome): void => {
    if (end > start) outcome.push({ start, end, outcome: what });
  };
  const settle = (start: number, end: number, what: PageOutcome, to: PageState): void => {
    if (end <= start) return;
    state.transition({ start, end }, what === 'unknown' ? 'quarantined' : to);
    record(start, end, what);
  };
  /** Gives [from, to) back its state from before the conversion: no hypercall reached it. */
  const restore = (from: number, to: number): void => {
    for (const run of original) {
      const start = Math.max(run.start, from);
      const end = Math.min(run.end, to);
      if (end <= start) continue;
      state.transition({ start, end }, run.state as PageState);
      record(start, end, run.state === target ? 'converted' : 'unchanged');
    }
  };
  const finish = (doneEnd: number, ending: Ending): ConversionOutcome => {
    restore(doneEnd, range.end);
    const pages = mergeRuns(outcome);
    if (ending.kind === 'failed') {
      log(
        '%s: conversion of %s..%s failed: %o',
        policy.name,
        hex(range.start),
        hex(range.end),
        ending.failure,
      );
      return { kind: 'failed', mapGpaCalls, acceptCalls, pages, failure: ending.failure };
    }
    const interruption = ending.interruption;
    state.note(
      `conversion ${hex(range.start)}..${hex(range.end)} ${interruption.kind === 'aborted' ? 'aborted' : 'lost its vCPU'} after ${mapGpaCalls} MapGPA and ${acceptCalls} ACCEPT calls`,
    );
    if (interruption.kind === 'vcpu-lost') throw interruption.error;
    return { kind: 'aborted', reason: interruption.reason, mapGpaCalls, acceptCalls, pages };
  };
  /** Accepts [start, end) (pages `converting`); settles what got accepted; returns the outcome. */
  const accept = async (start: number, end: number): Promise<AcceptOutcome> => {
    const accepted = await runAcceptRange(
      port,
      { start, end },
      policy.accept,
      state.acceptMemory,
      state.fuse,
      {
        ...(signal === undefined ? {} : { signal }),
      },
    );
    acceptCalls += accepted.tdcalls;
    const acceptedEnd = accepted.kind === 'ok' ? end : accepted.acceptedEnd;
    settle(start, acceptedEnd, 'converted', 'private-accepted');
    return accepted;
  };

  for (let i = 0; i < original.length; i++) {
    const run = original[i] as (typeof original)[number];
    if (!needsMap(run.state)) {
      if (!(run.state !== undefined && needsWork(run.state))) {
        record(run.start, run.end, 'converted');
        continue;
      }
      // To private over pages never accepted: accept only.
      const accepted = await accept(run.start, run.end);
      if (accepted.kind === 'ok') continue;
      if (accepted.kind === 'failed') {
        settle(accepted.acceptedEnd, run.end, 'unknown', 'quarantined');
        return finish(run.end, { kind: 'failed', failure: { step: 'accept', failure: accepted } });
      }
      settle(accepted.acceptedEnd, accepted.inFlightEnd, 'unknown', 'quarantined');
      restore(accepted.inFlightEnd, run.end);
      return finish(run.end, { kind: 'interrupted', interruption: accepted.interruption });
    }
    // Coalesce consecutive runs that all need MapGPA into one request.
    let end = run.end;
    while (i + 1 < original.length && needsMap((original[i + 1] as (typeof original)[number]).state))
      end = (original[++i] as (typeof original)[number]).end;
    const segment = { start: run.start, end };
    const mapped = await mapGpaSegment(state, port, segment, toShared, signal, budget, mapGpaCalls);
    mapGpaCalls += mapped.calls;
    if (mapped.kind === 'ok' && toShared) {
      settle(segment.start, segment.end, 'converted', 'shared');
      continue;
    }
    // To private, the guest accepts what the VMM says it converted: all of the segment, or the acknowledged prefix of
    // a failed MapGPA (so those pages are known-good private memory). One call site for both: V8 then never meets the
    // rare one without feedback, which threw this whole function's optimised code away in the middle of a campaign.
    const acceptEnd = toShared
      ? segment.start
      : mapped.kind === 'ok'
        ? segment.end
        : mapped.kind === 'failed'
          ? mapped.convertedEnd
          : segment.start;
    const accepted =
      mapped.kind === 'ok' || acceptEnd > segment.start ? await accept(segment.start, acceptEnd) : undefined;
    // Read once, here, for both: the rare path below then reads nothing V8 has not seen read.
    const acceptedEnd = accepted === undefined || accepted.kind === 'ok' ? acceptEnd : accepted.acceptedEnd;
    const acceptInterruption = accepted?.kind === 'interrupted' ? accepted.interruption : undefined;
    if (mapped.kind === 'ok') {
      const done = accepted as AcceptOutcome;
      if (done.kind === 'ok') continue;
      // The VMM converted the rest to private, but the guest could not accept it: unknown.
      settle(acceptedEnd, segment.end, 'unknown', 'quarantined');
      if (done.kind === 'failed')
        return finish(segment.end, { kind: 'failed', failure: { step: 'accept', failure: done } });
      return finish(segment.end, { kind: 'interrupted', interruption: acceptInterruption as Interruption });
    }
    // MapGPA stopped short: the acknowledged prefix is converted, what was asked beyond it unknown, the rest as it was.
    let convertedEnd = mapped.convertedEnd;
    const unknownEnd = Math.max(convertedEnd, mapped.requestedEnd);
    let lost: Interruption | undefined = mapped.kind === 'interrupted' ? mapped.interruption : undefined;
    if (toShared) {
      settle(segment.start, convertedEnd, 'converted', 'shared');
    } else if (accepted !== undefined) {
      convertedEnd = acceptedEnd;
      if (acceptInterruption !== undefined) lost = acceptInterruption;
    } else {
      // Interrupted: no TDCALL after the signal or the lost vCPU, so the acknowledged prefix stays unaccepted.
      convertedEnd = segment.start;
    }
    settle(convertedEnd, unknownEnd, 'unknown', 'quarantined');
    restore(unknownEnd, segment.end);
    if (lost !== undefined) return finish(segment.end, { kind: 'interrupted', interruption: lost });
    return finish(segment.end, {
      kind: 'failed',
      failure: { step: 'map-gpa', failure: (mapped as Extract<MapGpaOutcome, { kind: 'failed' }>).failure },
    });
  }
  return { kind: 'ok', mapGpaCalls, acceptCalls };
}

/** MapGPA over one segment with the guest's policy, its trace notes and what is left of the storm guard's budget. */
async function mapGpaSegment(
  state: GuestState,
  port: CpuPort,
  segment: GpaRange,
  toShared: boolean,
  signal: AbortSignal | undefined,
  budget: number | undefined,
  spent: number,
): Promise<MapGpaOutcome> {
  const mapped = await runMapGpa(port, state.gpaw, segment, toShared, state.policy.mapGpa, {
    ...(state.fuse === undefined ? {} : { fuse: state.fuse }),
    ...(signal === undefined ? {} : { signal }),
    ...(budget === undefined ? {} : { budget: Math.max(0, budget - spent) }),
    onCall: (call) =>
      state.note(
        `MapGPA r12=${hex(call.r12)} r13=${hex(call.r13)} -> ${tdvmcallStatusName(call.r10) ?? `status ${hex(call.r10)}`} r11=${hex(call.r11)}`,
      ),
  });
  const budgetText = budget === undefined ? 'no storm guard' : `storm guard ${budget} per operation`;
  state.note(
    `operation ${hex(segment.start)}..${hex(segment.end)} to ${toShared ? 'shared' : 'private'}: MapGPA ${mapped.kind} after ${mapped.calls} hypercalls (${budgetText})`,
  );
  if (mapped.kind === 'failed' && mapped.failure.kind === 'call-bound' && mapped.failure.guard === 'storm') {
    const calls = spent + mapped.calls;
    state.note(
      `storm guard: stopped after ${calls} MapGPA hypercalls in one operation, its budget (${budget}); the VMM's progress was too slow for the range`,
    );
    // The operation's count and budget, not this segment's.
    return { ...mapped, failure: { ...mapped.failure, calls, limit: budget as number } };
  }
  return mapped;
}

/**
 * The runs of a failed conversion's `pages`: `runs` in address order, touching runs with the same outcome joined. Any
 * guest that builds a {@link ConversionResult} from pieces (`TdGuest`, a wasm guest) reports its pages through it.
 */
export function mergeRuns(runs: readonly PageOutcomeRun[]): PageOutcomeRun[] {
  const sorted = [...runs].sort((a, b) => a.start - b.start);
  const merged: PageOutcomeRun[] = [];
  for (const run of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last.end === run.start && last.outcome === run.outcome) {
      merged[merged.length - 1] = { start: last.start, end: run.end, outcome: run.outcome };
    } else {
      merged.push(run);
    }
  }
  return merged;
}
