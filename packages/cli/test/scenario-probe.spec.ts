import type { TraceEvent } from '@tdxsim/tdx-module';
import { describe, expect } from 'vitest';
import { fc, test } from '../../../test/property-test.js';
import { ScenarioProbe } from '../src/index.js';
import type { TimelineCall } from '../src/scenario/scenario-result.js';

const LEAVES = ['TDH.VP.ENTER', 'TDH.MEM.PAGE.AUG', 'TDH.MEM.SEPT.ADD', 'TDH.MEM.PAGE.REMOVE'];
/** Statuses around bit 63, and values outside 64 bits that a foreign trace could carry. */
const status = fc.oneof(
  fc.constantFrom(0n, 1n << 63n, (1n << 64n) - 1n, 1n << 64n, -1n),
  fc.bigInt({ min: -(1n << 65n), max: 1n << 65n }),
);
const event: fc.Arbitrary<TraceEvent> = fc.oneof(
  fc
    .record({ kind: fc.constant('seamcall' as const), leaf: fc.constantFrom(...LEAVES), status })
    .map((e) => ({
      ...e,
      time: 0,
      args: { rcx: 0n, rdx: 0n, r8: 0n, r9: 0n },
    })),
  fc
    .record({ kind: fc.constant('tdcall' as const), leaf: fc.constantFrom('TDG.MEM.PAGE.ACCEPT'), status })
    .map((e) => ({ ...e, time: 0, vcpu: 0, args: {} })),
  fc
    .record({ kind: fc.constant('td-exit' as const), reason: fc.constantFrom('EPT_VIOLATION', 'HLT') })
    .map((e) => ({ ...e, time: 0, vcpu: 0, regs: { r11: 0n } })),
);

/** What the probe must draw, straight from the events: every call in a list, then the windows cut from it. */
function expected(events: readonly TraceEvent[], markAt: number | undefined) {
  const calls: TimelineCall[] = [];
  let markedAt: number | undefined;
  const byLeaf = new Map<string, number>();
  events.forEach((e, i) => {
    if (i === markAt) markedAt = calls.length;
    const failed = (s: bigint): 0 | 1 => (s >> 63n === 1n ? 1 : 0);
    if (e.kind === 'seamcall') {
      byLeaf.set(e.leaf, (byLeaf.get(e.leaf) ?? 0) + 1);
      if (e.leaf !== 'TDH.VP.ENTER') calls.push([e.time, 'v', e.leaf, failed(e.status)]);
    } else if (e.kind === 'tdcall') calls.push([e.time, 'g', e.leaf, failed(e.status)]);
    else if (e.kind === 'td-exit') calls.push([e.time, 'e', e.reason, 0]);
  });
  if (markAt !== undefined && markAt >= events.length) markedAt = calls.length;
  if (markedAt === undefined)
    return {
      byLeaf,
      calls: calls.slice(0, 120),
      skipped: { before: 0, after: Math.max(0, calls.length - 120) },
      marked: null,
    };
  const before = calls.slice(Math.max(0, markedAt - 80), markedAt);
  const after = calls.slice(markedAt, markedAt + 40);
  const lastFailed = before.map((c) => c[3]).lastIndexOf(1);
  return {
    byLeaf,
    calls: [...before, ...after],
    skipped: { before: markedAt - before.length, after: calls.length - markedAt - after.length },
    // The last failed call before the mark, else the last one (no MapGPA calls here).
    marked: before.length === 0 ? null : lastFailed >= 0 ? lastFailed : before.length - 1,
  };
}

describe('ScenarioProbe: counters and timeline window read from the trace', () => {
  test.prop([fc.array(event, { maxLength: 400 }), fc.option(fc.nat({ max: 420 }), { nil: undefined })])(
    'SEAMCALLs per leaf, failed calls (bit 63 of a 64-bit status) and the calls around the mark',
    (raw, markAt) => {
      const events = raw.map((e, i) => ({ ...e, time: (i + 1) * 1000 }));
      const probe = new ScenarioProbe();
      events.forEach((e, i) => {
        if (i === markAt) probe.mark();
        probe.record(e);
      });
      if (markAt !== undefined && markAt >= events.length) probe.mark();
      const want = expected(events, markAt);
      expect(probe.seamcallsByLeaf).toEqual(want.byLeaf);
      expect(probe.counters.seamcalls).toBe(events.filter((e) => e.kind === 'seamcall').length);
      const window = probe.window();
      expect(window.calls).toEqual(want.calls);
      expect(window.skipped).toEqual(want.skipped);
      expect(window.marked).toBe(want.marked);
    },
  );
});
