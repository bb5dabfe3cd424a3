import type { TraceEvent } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
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

describe('ScenarioProbe: every kind of event, read by its own reader', () => {
  /** A MapGPA to shared answered RETRY then SUCCESS, a REMOVE, a note: every kind the probe and its evidence read. */
  const events: TraceEvent[] = [
    {
      kind: 'td-exit',
      time: 1,
      vcpu: 1,
      reason: 'TDCALL',
      regs: { r11: 0x10001n, r12: 0x1000n | (1n << 47n), r13: 0x3000n },
    },
    { kind: 'vmm-reply', time: 2, vcpu: 1, regs: { r10: 1n, r11: 0x2000n | (1n << 47n) } },
    {
      kind: 'td-exit',
      time: 3,
      vcpu: 1,
      reason: 'TDCALL',
      regs: { r11: 0x10001n, r12: 0x2000n | (1n << 47n), r13: 0x2000n },
    },
    { kind: 'vmm-reply', time: 4, vcpu: 1, regs: { r10: 0n, r11: 0n } },
    {
      kind: 'seamcall',
      time: 5,
      leaf: 'TDH.MEM.PAGE.REMOVE',
      args: { rcx: 0x1000n, rdx: 0n, r8: 0n, r9: 0n },
      status: 0n,
    },
    { kind: 'vmm-reply', time: 6, vcpu: 0, regs: { r10: 0n } },
    { kind: 'note', time: 7, source: 'test', text: 'a note' },
  ];

  it('counters, timeline, evidence and kept trace of a MapGPA retried, a REMOVE and a note', () => {
    const probe = new ScenarioProbe({ keepTrace: true });
    for (const event of events) probe.record(event);
    const viaRecord = {
      counters: { ...probe.counters },
      window: probe.window(),
      evidence: probe.takeEvidence(),
      trace: probe.trace,
    };
    expect(viaRecord.trace).toEqual(events);
    expect(viaRecord.counters).toMatchObject({ mapGpaCalls: 2, retries: 1, tdExits: 2, seamcalls: 1 });
    expect(viaRecord.evidence.acknowledged).toEqual([
      { start: 0x1000, end: 0x2000 },
      { start: 0x2000, end: 0x4000 },
    ]);
    expect(viaRecord.evidence.removed).toEqual([{ start: 0x1000, end: 0x2000 }]);
    expect(viaRecord.window.calls.map((call) => call[2])).toEqual([
      'MapGPA 0x1000..0x4000 to shared',
      'MapGPA 0x1000..0x4000 → RETRY R11=0x800000002000',
      'MapGPA 0x2000..0x4000 to shared',
      'MapGPA 0x2000..0x4000 → SUCCESS',
      'TDH.MEM.PAGE.REMOVE',
    ]);
  });

  it('record refuses what is not a TraceEvent (a guest hands its own events to the same sink)', () => {
    const probe = new ScenarioProbe();
    expect(() => probe.record({ kind: 'seamcall' } as unknown as TraceEvent)).toThrow(/must be a TraceEvent/);
    expect(() => probe.record(null as unknown as TraceEvent)).toThrow(/must be a TraceEvent/);
    expect(probe.counters.seamcalls).toBe(0);
  });
});
