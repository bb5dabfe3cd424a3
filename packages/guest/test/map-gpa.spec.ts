import { type Gpaw, sharedBit, TdvmcallStatus, tdvmcallStatusName } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { type MapGpaOutcome, type MapGpaPolicy, mapGpa, mapGpaPresets } from '../src/index.js';
import { type MapGpaCall, type ScriptedReply, setupGuestTd, type TestVmmOptions } from './test-vmm.js';

/**
 * TDG.VP.VMCALL<MapGPA> loop (`mapGpa`) against scripted VMMs: every branch of the loop, with the exact R12/R13 the
 * VMM saw and the exact outcome. Reference guest-and-vmm.md §1 (GHCI contract) and §2.1 (Linux loop); issue 3 point 1.
 */

const PAGE = 4096;
const P = BigInt(PAGE);
const U64 = (1n << 64n) - 1n;
/** The range every test converts: 16 pages at 1 MiB. */
const START = 0x10_0000;
const PAGES = 16;
const END = START + PAGES * PAGE;
const S = BigInt(START);
const E = BigInt(END);

const { strict, linux, openvmm } = mapGpaPresets;

async function setup(vmm: TestVmmOptions, gpaw: Gpaw = 48) {
  const { module, td, vmm: testVmm } = await setupGuestTd({ gpaw, vmm });
  const shared = BigInt(sharedBit(gpaw));
  return {
    module,
    td,
    vmm: testVmm,
    shared,
    run: (toShared: boolean, policy: MapGpaPolicy, fuse?: number, range = { start: START, end: END }) =>
      mapGpa(td.guest(0), gpaw, range, toShared, policy, fuse === undefined ? {} : { fuse }),
  };
}

const retry = (r11: bigint, convertPages = 0): ScriptedReply => ({
  r10: TdvmcallStatus.RETRY,
  r11,
  convertPages,
});
const success = (convertPages = 0): ScriptedReply => ({ r10: TdvmcallStatus.SUCCESS, convertPages });
/** Replies in order; calls past the list are answered honestly (undefined). */
const replies =
  (...list: ScriptedReply[]) =>
  (_call: MapGpaCall, index: number): ScriptedReply | undefined =>
    list[index];
const call = (r12: bigint, r13: bigint): MapGpaCall => ({ r12, r13 });

function failed(
  calls: number,
  retries: number,
  convertedEnd: number,
  requestedEnd: number,
  failure: Extract<MapGpaOutcome, { kind: 'failed' }>['failure'],
): MapGpaOutcome {
  return { kind: 'failed', calls, retries, convertedEnd, requestedEnd, failure };
}

describe('mapGpa: SUCCESS and progress', () => {
  it('converts to shared in one call: R12 = start | shared bit, R13 = size, and the VMM really converts', async () => {
    const t = await setup({});
    expect(await t.run(true, strict)).toEqual({ kind: 'ok', calls: 1, retries: 0 });
    expect(t.vmm.calls).toEqual([call(S | t.shared, BigInt(PAGES) * P)]);
    const ept = t.module.sharedEpt(t.td.tdr);
    for (let gpa = START; gpa < END; gpa += PAGE) expect(ept.lookup(gpa)).toBeDefined();
    expect(ept.lookup(END)).toBeUndefined();
    expect(t.shared).toBe(0x8000_0000_0000n);
  });

  it('converts to private in one call with the shared bit clear on R12', async () => {
    const t = await setup({});
    expect(await t.run(false, strict)).toEqual({ kind: 'ok', calls: 1, retries: 0 });
    expect(t.vmm.calls).toEqual([call(S, BigInt(PAGES) * P)]);
  });

  it('uses bit 51 as the shared bit under GPAW 52', async () => {
    const t = await setup({}, 52);
    expect(await t.run(true, strict)).toEqual({ kind: 'ok', calls: 1, retries: 0 });
    expect(t.vmm.calls).toEqual([call(S | 0x8_0000_0000_0000n, BigInt(PAGES) * P)]);
  });

  it('follows progress RETRYs to shared: R11 keeps the shared bit, R13 = end − R11 each time', async () => {
    const t = await setup({ chunkPages: 5 });
    expect(await t.run(true, strict)).toEqual({ kind: 'ok', calls: 4, retries: 3 });
    const sh = t.shared;
    expect(t.vmm.calls).toEqual([
      call(S | sh, 16n * P),
      call((S + 5n * P) | sh, 11n * P),
      call((S + 10n * P) | sh, 6n * P),
      call((S + 15n * P) | sh, 1n * P),
    ]);
  });

  it('follows progress RETRYs to private with the shared bit clear throughout', async () => {
    const t = await setup({ chunkPages: 7 });
    expect(await t.run(false, strict)).toEqual({ kind: 'ok', calls: 3, retries: 2 });
    expect(t.vmm.calls).toEqual([call(S, 16n * P), call(S + 7n * P, 9n * P), call(S + 14n * P, 2n * P)]);
  });

  it('resumes from whatever progress R11 reports (1 page, then 7, then SUCCESS)', async () => {
    const t = await setup({
      script: (c, i) => (i === 0 ? retry(c.r12 + P, 1) : i === 1 ? retry(c.r12 + 7n * P, 7) : success(8)),
    });
    expect(await t.run(true, strict)).toEqual({ kind: 'ok', calls: 3, retries: 2 });
    const sh = t.shared;
    expect(t.vmm.calls).toEqual([
      call(S | sh, 16n * P),
      call((S + P) | sh, 15n * P),
      call((S + 8n * P) | sh, 8n * P),
    ]);
  });

  it('asks for the fixed chunk in every call with a chunked policy (the last one truncated)', async () => {
    const t = await setup({});
    const chunked: MapGpaPolicy = { ...strict, name: 'chunk4', request: 4 * PAGE };
    const range = { start: START, end: START + 10 * PAGE };
    expect(await t.run(true, chunked, undefined, range)).toEqual({ kind: 'ok', calls: 3, retries: 0 });
    const sh = t.shared;
    expect(t.vmm.calls).toEqual([
      call(S | sh, 4n * P),
      call((S + 4n * P) | sh, 4n * P),
      call((S + 8n * P) | sh, 2n * P),
    ]);
  });

  it('asks for the fixed chunk from R11 after a partial RETRY with a chunked policy', async () => {
    const t = await setup({ chunkPages: 3 });
    const chunked: MapGpaPolicy = { ...strict, name: 'chunk4', request: 4 * PAGE };
    const range = { start: START, end: START + 10 * PAGE };
    expect(await t.run(false, chunked, undefined, range)).toEqual({ kind: 'ok', calls: 4, retries: 3 });
    expect(t.vmm.calls).toEqual([
      call(S, 4n * P),
      call(S + 3n * P, 4n * P),
      call(S + 6n * P, 4n * P),
      call(S + 9n * P, 1n * P),
    ]);
  });

  it('reports every hypercall and its reply to onCall', async () => {
    const { td, vmm } = await setupGuestTd({ vmm: { chunkPages: 10 } });
    const seen: { r12: bigint; r13: bigint; r10: bigint; r11: bigint; rax: bigint }[] = [];
    const outcome = await mapGpa(td.guest(0), 48, { start: START, end: END }, false, strict, {
      onCall: (c) => seen.push(c),
    });
    expect(outcome).toEqual({ kind: 'ok', calls: 2, retries: 1 });
    expect(seen).toEqual([
      { r12: S, r13: 16n * P, r10: TdvmcallStatus.RETRY, r11: S + 10n * P, rax: 0n },
      { r12: S + 10n * P, r13: 6n * P, r10: TdvmcallStatus.SUCCESS, r11: 0n, rax: 0n },
    ]);
    expect(vmm.calls.length).toBe(2);
  });
});

describe('mapGpa: RETRY without progress (budget 3, as Linux)', () => {
  it('accepts 2 no-progress RETRYs then SUCCESS (to shared: R11 = R12 with the shared bit)', async () => {
    const t = await setup({ noProgressCalls: new Set([0, 1]) });
    expect(await t.run(true, strict)).toEqual({ kind: 'ok', calls: 3, retries: 2 });
    const first = call(S | t.shared, 16n * P);
    expect(t.vmm.calls).toEqual([first, first, first]);
  });

  it('fails at the 3rd consecutive no-progress RETRY and makes no further call', async () => {
    const t = await setup({ noProgressCalls: new Set([0, 1, 2]) });
    expect(await t.run(false, strict)).toEqual(failed(3, 3, START, END, { kind: 'no-progress', retries: 3 }));
    expect(t.vmm.calls).toEqual([call(S, 16n * P), call(S, 16n * P), call(S, 16n * P)]);
  });

  it('resets the counter on progress (2 + 2 no-progress around one progress RETRY)', async () => {
    const t = await setup({ chunkPages: 8, noProgressCalls: new Set([0, 1, 3, 4]) });
    expect(await t.run(true, strict)).toEqual({ kind: 'ok', calls: 6, retries: 5 });
    const sh = t.shared;
    const a = call(S | sh, 16n * P);
    const b = call((S + 8n * P) | sh, 8n * P);
    expect(t.vmm.calls).toEqual([a, a, a, b, b, b]);
  });

  it('after progress, 3 no-progress RETRYs fail with the progress kept as converted', async () => {
    const t = await setup({ chunkPages: 8, noProgressCalls: new Set([1, 2, 3]) });
    expect(await t.run(true, strict)).toEqual(
      failed(4, 4, START + 8 * PAGE, END, { kind: 'no-progress', retries: 3 }),
    );
    expect(t.vmm.calls.length).toBe(4);
  });

  it('resets the counter on a chunk SUCCESS with a chunked policy', async () => {
    const t = await setup({ noProgressCalls: new Set([0, 1, 3, 4]) });
    const chunked: MapGpaPolicy = { ...strict, name: 'chunk8', request: 8 * PAGE };
    expect(await t.run(false, chunked)).toEqual({ kind: 'ok', calls: 6, retries: 4 });
    const a = call(S, 8n * P);
    const b = call(S + 8n * P, 8n * P);
    expect(t.vmm.calls).toEqual([a, a, a, b, b, b]);
  });
});

describe('mapGpa: strict R11 validation', () => {
  // Each case: the hostile reply at call 0 (or after one progress RETRY), the failure kind, convertedEnd, requestedEnd.
  interface Case {
    readonly name: string;
    readonly toShared: boolean;
    /** R11 of the hostile RETRY, from the shared bit. */
    readonly r11: (shared: bigint) => bigint;
    readonly kind: 'r11-out-of-range' | 'r11-unaligned' | 'r11-beyond-request';
    /** A progress RETRY to START + 4 pages first. */
    readonly afterProgress?: boolean;
    readonly chunkPages?: number;
    readonly convertedEnd: number;
    readonly requestedEnd: number;
  }
  const cases: Case[] = [
    {
      name: 'below the start (to shared)',
      toShared: true,
      r11: (sh) => (S - P) | sh,
      kind: 'r11-out-of-range',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'below the current start after progress (to shared)',
      toShared: true,
      r11: (sh) => (S + 2n * P) | sh,
      afterProgress: true,
      kind: 'r11-out-of-range',
      convertedEnd: START + 4 * PAGE,
      requestedEnd: END,
    },
    {
      name: 'below the current start after progress (to private)',
      toShared: false,
      r11: () => S + 3n * P,
      afterProgress: true,
      kind: 'r11-out-of-range',
      convertedEnd: START + 4 * PAGE,
      requestedEnd: END,
    },
    {
      name: 'at the end (to shared)',
      toShared: true,
      r11: (sh) => E | sh,
      kind: 'r11-out-of-range',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'at the end (to private)',
      toShared: false,
      r11: () => E,
      kind: 'r11-out-of-range',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'past the end (to private)',
      toShared: false,
      r11: () => E + P,
      kind: 'r11-out-of-range',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'huge: 2^64 − 4096 (to shared)',
      toShared: true,
      r11: () => U64 - P + 1n,
      kind: 'r11-out-of-range',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'huge: bit 63 on a valid resume point (to private)',
      toShared: false,
      r11: () => (S + 4n * P) | (1n << 63n),
      kind: 'r11-out-of-range',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'unaligned inside the range (to shared)',
      toShared: true,
      r11: (sh) => (S + P + 0x800n) | sh,
      kind: 'r11-unaligned',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'unaligned by one byte after progress (to private)',
      toShared: false,
      r11: () => S + 4n * P + 1n,
      afterProgress: true,
      kind: 'r11-unaligned',
      convertedEnd: START + 4 * PAGE,
      requestedEnd: END,
    },
    {
      name: 'shared bit dropped on a to-shared request',
      toShared: true,
      r11: () => S + 4n * P,
      kind: 'r11-out-of-range',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'shared bit added on a to-private request',
      toShared: false,
      r11: (sh) => (S + 4n * P) | sh,
      kind: 'r11-out-of-range',
      convertedEnd: START,
      requestedEnd: END,
    },
    {
      name: 'beyond what the call asked (chunk of 4 pages, R11 = start + 5 pages)',
      toShared: true,
      r11: (sh) => (S + 5n * P) | sh,
      chunkPages: 4,
      kind: 'r11-beyond-request',
      convertedEnd: START,
      requestedEnd: START + 4 * PAGE,
    },
    {
      name: 'beyond what the call asked after a chunk SUCCESS (to private)',
      toShared: false,
      r11: () => S + 9n * P,
      chunkPages: 4,
      afterProgress: true,
      kind: 'r11-beyond-request',
      convertedEnd: START + 4 * PAGE,
      requestedEnd: START + 8 * PAGE,
    },
  ];

  it.each(cases)('R11 $name → $kind, and no hypercall after it', async (c) => {
    const shared = BigInt(sharedBit(48));
    const hostile = retry(c.r11(shared));
    const first =
      c.chunkPages === undefined ? retry((S + 4n * P) | (c.toShared ? shared : 0n), 4) : success(4);
    const t = await setup({ script: replies(...(c.afterProgress === true ? [first, hostile] : [hostile])) });
    const policy: MapGpaPolicy =
      c.chunkPages === undefined ? strict : { ...strict, name: 'chunked', request: c.chunkPages * PAGE };
    const calls = c.afterProgress === true ? 2 : 1;
    const retries = c.afterProgress === true && c.chunkPages === undefined ? 2 : 1;
    expect(await t.run(c.toShared, policy)).toEqual(
      failed(calls, retries, c.convertedEnd, c.requestedEnd, { kind: c.kind, r11: c.r11(shared) }),
    );
    expect(t.vmm.calls.length).toBe(calls);
  });
});

describe('mapGpa: GHCI statuses other than SUCCESS and RETRY', () => {
  const named = ['INVALID_OPERAND', 'GPA_INUSE', 'ALIGN_ERROR', 'SUBFUNC_UNSUPPORTED'] as const;

  it.each(named)('%s on the first call → status failure decoded, nothing converted', async (name) => {
    const status = TdvmcallStatus[name];
    const t = await setup({ script: replies({ r10: status, r11: S }) });
    expect(await t.run(true, strict)).toEqual(
      failed(1, 0, START, END, { kind: 'status', status, statusName: name }),
    );
    expect(t.vmm.calls.length).toBe(1);
  });

  it.each(named)('%s after two progress RETRYs → converted prefix kept, no further call', async (name) => {
    const status = TdvmcallStatus[name];
    const t = await setup({
      script: replies(retry(S + 3n * P, 3), retry(S + 6n * P, 3), { r10: status, r11: S + 6n * P }),
    });
    expect(await t.run(false, strict)).toEqual(
      failed(3, 2, START + 6 * PAGE, END, { kind: 'status', status, statusName: name }),
    );
    expect(t.vmm.calls).toEqual([call(S, 16n * P), call(S + 3n * P, 13n * P), call(S + 6n * P, 10n * P)]);
  });

  it.each([0x8000_0000_0000_0004n, 2n, 0x4000_0000_0000_0000n, U64])(
    'status 0x%s outside the GHCI set → status failure with no name',
    async (status) => {
      expect(tdvmcallStatusName(status)).toBeUndefined();
      const t = await setup({ script: replies({ r10: status, r11: 0n }) });
      expect(await t.run(true, strict)).toEqual(
        failed(1, 0, START, END, { kind: 'status', status, statusName: undefined }),
      );
      expect(t.vmm.calls.length).toBe(1);
    },
  );
});

describe('mapGpa: call bound and simulator fuse', () => {
  it("strict's bound is 3 × pages + 1 and fits the worst legal VMM (2 no-progress, then one page, per page)", async () => {
    expect(strict.callBound(8)).toBe(25);
    const range = { start: START, end: START + 8 * PAGE };
    const t = await setup({
      script: (c, i) => (i % 3 < 2 ? retry(c.r12) : c.r13 === P ? success(1) : retry(c.r12 + P, 1)),
    });
    expect(await t.run(false, strict, undefined, range)).toEqual({ kind: 'ok', calls: 24, retries: 23 });
    expect(t.vmm.calls.length).toBe(24);
    expect(t.vmm.calls[23]).toEqual(call(S + 7n * P, P));
  });

  it('a policy bound stops the loop with call-bound, without one more call', async () => {
    const bounded: MapGpaPolicy = { ...strict, name: 'bounded', callBound: (pages) => pages / 4 };
    const t = await setup({ script: (c) => retry(c.r12 + P, 1) });
    expect(await t.run(true, bounded)).toEqual(
      failed(4, 4, START + 4 * PAGE, END, { kind: 'call-bound', calls: 4, limit: 4, guard: 'range' }),
    );
    expect(t.vmm.calls.length).toBe(4);
  });

  it('linux with one-byte progress never trips its budget: the fuse stops it as would-not-terminate', async () => {
    const t = await setup({ script: (c) => retry(c.r12 + 1n) });
    const outcome = await t.run(true, linux, 10);
    expect(outcome).toMatchObject({
      kind: 'failed',
      calls: 10,
      retries: 10,
      requestedEnd: END,
      failure: { kind: 'would-not-terminate', calls: 10 },
    });
    expect(t.vmm.calls).toEqual(
      Array.from({ length: 10 }, (_, i) =>
        call((S | t.shared) + BigInt(i), (E | t.shared) - (S | t.shared) - BigInt(i)),
      ),
    );
  });

  it('openvmm answered no-progress RETRY forever: the explicit fuse stops it', async () => {
    const t = await setup({ script: (c) => retry(c.r12) });
    expect(await t.run(false, openvmm, 12)).toEqual(
      failed(12, 12, START, END, { kind: 'would-not-terminate', calls: 12 }),
    );
    expect(t.vmm.calls.length).toBe(12);
  });

  it('the default fuse is 16 calls per page + 64 (128 for 4 pages)', async () => {
    const t = await setup({ script: (c) => retry(c.r12) });
    const range = { start: START, end: START + 4 * PAGE };
    expect(await t.run(true, openvmm, undefined, range)).toEqual(
      failed(128, 128, START, START + 4 * PAGE, { kind: 'would-not-terminate', calls: 128 }),
    );
    expect(t.vmm.calls.length).toBe(128);
  });
});
