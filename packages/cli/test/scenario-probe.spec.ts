import {
  MemoryTraceSink,
  seamcallTraceEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TraceEvent,
  tdcallTraceEvent,
  tdExitTraceEvent,
  toPrivateGpa,
} from '@tdxsim/tdx-module';
import { ConversionEvidenceSink } from '@tdxsim/testkit';
import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../test/property-test.js';
import { ScenarioProbe } from '../src/index.js';
import type { TimelineCall } from '../src/scenario/scenario-result.js';

const LEAVES = ['TDH.VP.ENTER', 'TDH.MEM.PAGE.AUG', 'TDH.MEM.SEPT.ADD', 'TDH.MEM.PAGE.REMOVE'];
const MAP_GPA = TdvmcallSubfunction.MAP_GPA;
const RETRY = TdvmcallStatus.RETRY;
const SHARED = 1n << 47n;
/** Statuses around bit 63, and values outside 64 bits that a foreign trace could carry. */
const status = fc.oneof(
  fc.constantFrom(0n, 1n << 63n, (1n << 64n) - 1n, 1n << 64n, -1n),
  fc.bigInt({ min: -(1n << 65n), max: 1n << 65n }),
);
/** A few pages, private or shared, so that MapGPA requests, RETRY's R11 and REMOVEs fall on each other. */
const gpa = fc.constantFrom(0n, 0x1000n, 0x2000n, 0x3000n, 0x20_0000n);
const vcpu = fc.constantFrom(0, 1);
const event: fc.Arbitrary<TraceEvent> = fc.oneof(
  fc
    .record({ kind: fc.constant('seamcall' as const), leaf: fc.constantFrom(...LEAVES), status })
    .map((e) => ({
      ...e,
      time: 0,
      args: { rcx: 0n, rdx: 0n, r8: 0n, r9: 0n },
    })),
  // A REMOVE that succeeded, of a 4K or 2M page (RCX = GPA | level).
  fc.record({ at: gpa, level: fc.constantFrom(0n, 1n) }).map(({ at, level }) => ({
    kind: 'seamcall' as const,
    time: 0,
    leaf: 'TDH.MEM.PAGE.REMOVE',
    args: { rcx: at | level, rdx: 0n, r8: 0n, r9: 0n },
    status: 0n,
  })),
  fc
    .record({ kind: fc.constant('tdcall' as const), leaf: fc.constantFrom('TDG.MEM.PAGE.ACCEPT'), status })
    .map((e) => ({ ...e, time: 0, vcpu: 0, args: {} })),
  fc
    .record({ kind: fc.constant('td-exit' as const), reason: fc.constantFrom('EPT_VIOLATION', 'HLT'), vcpu })
    .map((e) => ({ ...e, time: 0, regs: { r11: 0n } })),
  // The exit of a TDCALL: a MapGPA of [R12, R12 + R13) (to shared when R12 has the shared bit), or another call.
  fc
    .record({
      vcpu,
      r11: fc.constantFrom(MAP_GPA, MAP_GPA, 0x10000n),
      r12: fc.tuple(gpa, fc.boolean()).map(([at, shared]) => (shared ? at | SHARED : at)),
      r13: fc.constantFrom(0x1000n, 0x3000n),
    })
    .map(({ vcpu, ...regs }) => ({ kind: 'td-exit' as const, time: 0, vcpu, reason: 'TDCALL', regs })),
  // The VMM's reply: SUCCESS, or RETRY with R11 (shared bit or not) inside the request or out of it.
  fc
    .record({
      vcpu,
      r10: fc.constantFrom(0n, RETRY),
      r11: fc.tuple(gpa, fc.boolean()).map(([at, shared]) => (shared ? at | SHARED : at)),
    })
    .map(({ vcpu, ...regs }) => ({ kind: 'vmm-reply' as const, time: 0, vcpu, regs })),
);

/** What the probe must draw, straight from the events: every call in a list, then the windows cut from it. */
function expected(events: readonly TraceEvent[], markAt: number | undefined) {
  const calls: TimelineCall[] = [];
  let markedAt: number | undefined;
  const byLeaf = new Map<string, number>();
  /** Per vCPU, the MapGPA request waiting for its reply, as the timeline writes it. */
  const pending = new Map<number, string>();
  let mapGpaCalls = 0;
  let retries = 0;
  const hex = (value: number | bigint): string => `0x${value.toString(16)}`;
  events.forEach((e, i) => {
    if (i === markAt) markedAt = calls.length;
    const failed = (s: bigint): 0 | 1 => (s >> 63n === 1n ? 1 : 0);
    if (e.kind === 'seamcall') {
      byLeaf.set(e.leaf, (byLeaf.get(e.leaf) ?? 0) + 1);
      if (e.leaf !== 'TDH.VP.ENTER') calls.push([e.time, 'v', e.leaf, failed(e.status)]);
    } else if (e.kind === 'tdcall') calls.push([e.time, 'g', e.leaf, failed(e.status)]);
    else if (e.kind === 'td-exit') {
      if (e.reason === 'TDCALL' && e.regs.r11 === MAP_GPA) {
        const r12 = e.regs.r12 ?? 0n;
        const start = toPrivateGpa(Number(r12), 48);
        const where = `${hex(start)}..${hex(start + Number(e.regs.r13 ?? 0n))}`;
        pending.set(e.vcpu, where);
        calls.push([e.time, 'e', `MapGPA ${where} to ${r12 & SHARED ? 'shared' : 'private'}`, 0]);
      } else calls.push([e.time, 'e', e.reason, 0]);
    } else if (e.kind === 'vmm-reply') {
      const where = pending.get(e.vcpu);
      if (where === undefined) return;
      pending.delete(e.vcpu);
      mapGpaCalls++;
      const retry = e.regs.r10 === RETRY;
      if (retry) retries++;
      const answer = retry ? `RETRY R11=${hex(e.regs.r11 ?? 0n)}` : 'SUCCESS';
      calls.push([e.time, 'e', `MapGPA ${where} → ${answer}`, 0]);
    }
  });
  const counters = { mapGpaCalls, retries };
  if (markAt !== undefined && markAt >= events.length) markedAt = calls.length;
  if (markedAt === undefined)
    return {
      byLeaf,
      counters,
      calls: calls.slice(0, 120),
      skipped: { before: 0, after: Math.max(0, calls.length - 120) },
      marked: null,
    };
  const before = calls.slice(Math.max(0, markedAt - 80), markedAt);
  const after = calls.slice(markedAt, markedAt + 40);
  const lastFailed = before.map((c) => c[3]).lastIndexOf(1);
  const lastMapGpa = before.map((c) => c[2].startsWith('MapGPA')).lastIndexOf(true);
  return {
    byLeaf,
    counters,
    calls: [...before, ...after],
    skipped: { before: markedAt - before.length, after: calls.length - markedAt - after.length },
    // The last failed call before the mark, else the last MapGPA call, else the last one.
    marked:
      before.length === 0
        ? null
        : lastFailed >= 0
          ? lastFailed
          : lastMapGpa >= 0
            ? lastMapGpa
            : before.length - 1,
  };
}

describe('ScenarioProbe: counters and timeline window read from the trace', () => {
  test.prop([fc.array(event, { maxLength: 400 }), fc.option(fc.nat({ max: 420 }), { nil: undefined })])(
    'SEAMCALLs per leaf, failed calls (bit 63 of a 64-bit status), MapGPA calls, the calls around the mark, and the evidence a bare evidence sink collects',
    (raw, markAt) => {
      const events = raw.map((e, i) => ({ ...e, time: (i + 1) * 1000 }));
      const probe = new ScenarioProbe();
      // The probe hands its evidence sink only the events the sink acts on: a sink given every event must agree.
      const sink = new ConversionEvidenceSink();
      events.forEach((e, i) => {
        if (i === markAt) probe.mark();
        probe.record(e);
        sink.record(e);
        if (i % 7 === 6) expect(probe.takeEvidence()).toEqual(sink.takeEvidence());
      });
      expect(probe.takeEvidence()).toEqual(sink.takeEvidence());
      if (markAt !== undefined && markAt >= events.length) probe.mark();
      const want = expected(events, markAt);
      expect(probe.seamcallsByLeaf).toEqual(want.byLeaf);
      expect(probe.counters.seamcalls).toBe(events.filter((e) => e.kind === 'seamcall').length);
      expect(probe.counters.tdExits).toBe(events.filter((e) => e.kind === 'td-exit').length);
      expect(probe.counters).toMatchObject(want.counters);
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

  it('a call of each lane, failed or not, drawn the same from the first calls and from the ring before a mark', () => {
    const calls: TimelineCall[] = [
      [1, 'v', 'TDH.MEM.PAGE.AUG', 0],
      [2, 'v', 'TDH.MEM.PAGE.AUG', 1],
      [3, 'g', 'TDG.MEM.PAGE.ACCEPT', 0],
      [4, 'g', 'TDG.MEM.PAGE.ACCEPT', 1],
      [5, 'e', 'EPT_VIOLATION', 0],
    ];
    const eventOf = ([time, lane, label, failed]: TimelineCall, shift: number): TraceEvent => {
      const status = failed === 1 ? 0xc000_0000_0000_0000n : 0n;
      if (lane === 'v') return { kind: 'seamcall', time: time + shift, leaf: label, args: {}, status };
      if (lane === 'g') return { kind: 'tdcall', time: time + shift, vcpu: 0, leaf: label, args: {}, status };
      return { kind: 'td-exit', time: time + shift, vcpu: 0, reason: label, regs: {} };
    };
    const probe = new ScenarioProbe();
    // 25 rounds of the five: the first 120 calls as tuples, the last 80 through the ring.
    for (let round = 0; round < 25; round++)
      for (const call of calls) probe.record(eventOf(call, round * 10));
    expect(probe.window().calls.slice(0, 5)).toEqual(calls);
    probe.mark();
    const window = probe.window();
    expect(window.calls.slice(-5)).toEqual(calls.map(([time, ...rest]) => [time + 240, ...rest]));
    expect(window.skipped).toEqual({ before: 45, after: 0 });
    expect(window.marked).toBe(78);
  });

  it('record refuses what is not a TraceEvent (a guest hands its own events to the same sink)', () => {
    const probe = new ScenarioProbe();
    expect(() => probe.record({ kind: 'seamcall' } as unknown as TraceEvent)).toThrow(/must be a TraceEvent/);
    expect(() => probe.record(null as unknown as TraceEvent)).toThrow(/must be a TraceEvent/);
    expect(probe.counters.seamcalls).toBe(0);
  });
});

describe("ScenarioProbe: the module's calls given as fields", () => {
  /** 16 registers with the named ones of `regs` set (the others 0), as the module holds an exit's or a TDCALL's. */
  const gprsOf = (regs: Readonly<Record<string, bigint>>): bigint[] => {
    const names = ['rax', 'rcx', 'rdx', '', '', '', '', '', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13'];
    return Array.from({ length: 16 }, (_, i) => regs[names[i] ?? ''] ?? 0n);
  };
  /**
   * Each event as the module would give it: the SEAMCALL, TDCALL and TD exit events as their fields (with the event
   * those fields stand for), the others as events.
   */
  const asFields = (e: TraceEvent) => {
    if (e.kind === 'seamcall') {
      const { rcx = 0n, rdx = 0n, r8 = 0n, r9 = 0n } = e.args;
      const event = seamcallTraceEvent(e.time, e.leaf, rcx, rdx, r8, r9, e.status);
      return {
        event,
        give: (p: ScenarioProbe) => p.seamcallFields(e.time, e.leaf, rcx, rdx, r8, r9, e.status),
      };
    }
    if (e.kind === 'tdcall') {
      const regs = gprsOf(e.args);
      const event = tdcallTraceEvent(e.time, e.vcpu, e.leaf, regs, e.status);
      return { event, give: (p: ScenarioProbe) => p.tdcallFields(e.time, e.vcpu, e.leaf, regs, e.status) };
    }
    if (e.kind === 'td-exit') {
      const regs = gprsOf(e.regs);
      const event = tdExitTraceEvent(e.time, e.vcpu, e.reason, regs);
      return { event, give: (p: ScenarioProbe) => p.tdExitFields(e.time, e.vcpu, e.reason, regs) };
    }
    return { event: e, give: (p: ScenarioProbe) => p.record(e) };
  };

  test.prop([
    fc.array(event, { maxLength: 300 }),
    fc.option(fc.nat({ max: 320 }), { nil: undefined }),
    fc.constantFrom('count', 'keep', 'forward'),
  ])(
    'counters, SEAMCALLs per leaf, timeline window, evidence and kept or forwarded trace are those of record()',
    (raw, markAt, keeping) => {
      const calls = raw.map((e, i) => asFields({ ...e, time: (i + 1) * 1000 }));
      const forwardedByFields = new MemoryTraceSink();
      const forwardedByRecord = new MemoryTraceSink();
      const byFields = new ScenarioProbe({
        keepTrace: keeping === 'keep',
        ...(keeping === 'forward' ? { forward: forwardedByFields } : {}),
      });
      const byRecord = new ScenarioProbe({
        keepTrace: keeping === 'keep',
        ...(keeping === 'forward' ? { forward: forwardedByRecord } : {}),
      });
      calls.forEach(({ event, give }, i) => {
        if (i === markAt) {
          byFields.mark();
          byRecord.mark();
        }
        give(byFields);
        byRecord.record(event);
        if (i % 5 === 4) expect(byFields.takeEvidence()).toEqual(byRecord.takeEvidence());
      });
      expect(byFields.takeEvidence()).toEqual(byRecord.takeEvidence());
      expect(byFields.counters).toEqual(byRecord.counters);
      expect(byFields.seamcallsByLeaf).toEqual(byRecord.seamcallsByLeaf);
      expect(byFields.window()).toEqual(byRecord.window());
      expect(byFields.trace).toEqual(byRecord.trace);
      expect(forwardedByFields.events).toEqual(forwardedByRecord.events);
    },
  );

  test('a field call with a field of the wrong type is refused as record refuses an event, nothing counted', () => {
    const probe = new ScenarioProbe();
    const regs = new Array<bigint>(16).fill(0n);
    const bad: (() => void)[] = [
      () => probe.seamcallFields('1' as never, 'TDH.MEM.PAGE.AUG', 0n, 0n, 0n, 0n, 0n),
      () => probe.seamcallFields(1, 7 as never, 0n, 0n, 0n, 0n, 0n),
      () => probe.seamcallFields(1, 'TDH.MEM.PAGE.AUG', 0n, 0n, 0n, 0n, 0 as never),
      () => probe.tdcallFields(1, 0, {} as never, regs, 0n),
      () => probe.tdcallFields(undefined as never, 0, 'TDG.MEM.PAGE.ACCEPT', regs, 0n),
      () => probe.tdExitFields(1, 0, null as never, regs),
      () => probe.tdExitFields(1, 0, 'TDCALL', 'regs' as never),
    ];
    for (const call of bad) expect(call).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(probe.counters).toEqual({ mapGpaCalls: 0, retries: 0, tdExits: 0, seamcalls: 0, tdcalls: 0 });
    expect(probe.seamcallsByLeaf.size).toBe(0);
    expect(probe.window().skipped.after + probe.window().calls.length).toBe(0);
  });
});
