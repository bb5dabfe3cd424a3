import { sharedBit, TdvmcallStatus } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  type MapGpaOutcome,
  type MapGpaPolicy,
  type MapGpaPresetName,
  mapGpa,
  mapGpaPresets,
  TdGuest,
} from '../src/index.js';
import { type MapGpaCall, type ScriptedReply, setupGuestTd, type TestVmmOptions } from './test-vmm.js';

/**
 * The MapGPA presets, each against the VMM behaviour that shows its documented difference (reference
 * guest-and-vmm.md §2.1 for Linux, §6 and §6.1 for the peers); issue 3 point 2.
 */

const PAGE = 4096;
const P = BigInt(PAGE);
const START = 0x10_0000;
const PAGES = 16;
const END = START + PAGES * PAGE;
const S = BigInt(START);
const E = BigInt(END);
const SH = BigInt(sharedBit(48));

const ALL = Object.keys(mapGpaPresets) as MapGpaPresetName[];
const LOOPING: MapGpaPresetName[] = [
  'linux',
  'edk2',
  'tdShim',
  'asterinas',
  'openvmm',
  'coconutSvsm',
  'strict',
];
const LINUX_LIKE: MapGpaPresetName[] = ['linux', 'edk2', 'tdShim'];

async function setup(vmm: TestVmmOptions) {
  const { module, td, vmm: testVmm } = await setupGuestTd({ vmm });
  return {
    module,
    td,
    vmm: testVmm,
    run: (toShared: boolean, policy: MapGpaPolicy, fuse?: number) =>
      mapGpa(
        td.guest(0),
        48,
        { start: START, end: END },
        toShared,
        policy,
        fuse === undefined ? {} : { fuse },
      ),
  };
}

const retry = (r11: bigint, convertPages = 0): ScriptedReply => ({
  r10: TdvmcallStatus.RETRY,
  r11,
  convertPages,
});
const replies =
  (...list: ScriptedReply[]) =>
  (_call: MapGpaCall, index: number): ScriptedReply | undefined =>
    list[index];
const call = (r12: bigint, r13: bigint): MapGpaCall => ({ r12, r13 });
const dir = (toShared: boolean): bigint => (toShared ? SH : 0n);
const invalidOperand = {
  kind: 'status',
  status: TdvmcallStatus.INVALID_OPERAND,
  statusName: 'INVALID_OPERAND',
} as const;
const alignError = { kind: 'status', status: TdvmcallStatus.ALIGN_ERROR, statusName: 'ALIGN_ERROR' } as const;

function failed(
  calls: number,
  retries: number,
  convertedEnd: number,
  requestedEnd: number,
  failure: Extract<MapGpaOutcome, { kind: 'failed' }>['failure'],
): MapGpaOutcome {
  return { kind: 'failed', calls, retries, convertedEnd, requestedEnd, failure };
}

describe('presets against the honest VMM in chunks', () => {
  const cases = LOOPING.flatMap((name) =>
    [1, 3, 5, 16, 20].flatMap((chunk) =>
      [true, false]
        // Asterinas fails a KVM-style to-shared RETRY (tested below), so only its to-private conversion loops.
        .filter((toShared) => !(name === 'asterinas' && toShared && chunk < PAGES))
        .map((toShared) => ({ name, chunk, toShared, calls: Math.ceil(PAGES / Math.min(chunk, PAGES)) })),
    ),
  );

  it.each(cases)(
    '$name, chunk $chunk pages, toShared $toShared → $calls calls, each R12/R13 exact',
    async (c) => {
      const t = await setup({ chunkPages: c.chunk });
      expect(await t.run(c.toShared, mapGpaPresets[c.name])).toEqual({
        kind: 'ok',
        calls: c.calls,
        retries: c.calls - 1,
      });
      const step = Math.min(c.chunk, PAGES);
      expect(t.vmm.calls).toEqual(
        Array.from({ length: c.calls }, (_, i) =>
          call((S + BigInt(i * step) * P) | dir(c.toShared), BigInt(PAGES - i * step) * P),
        ),
      );
      const ept = t.module.sharedEpt(t.td.tdr);
      for (let gpa = START; gpa < END; gpa += PAGE) expect(ept.lookup(gpa) !== undefined).toBe(c.toShared);
    },
  );

  it.each(['tdxGuestCrate', 'oak'] as const)(
    '%s: one call converts the whole range when the VMM answers SUCCESS',
    async (name) => {
      const t = await setup({});
      expect(await t.run(true, mapGpaPresets[name])).toEqual({ kind: 'ok', calls: 1, retries: 0 });
      expect(t.vmm.calls).toEqual([call(S | SH, 16n * P)]);
    },
  );
});

describe('tdxGuestCrate and oak: no RETRY support (reference §6: single call / RETRY not handled)', () => {
  it.each(['tdxGuestCrate', 'oak'] as const)(
    '%s: a progress RETRY fails with retry-unsupported after one call',
    async (name) => {
      const t = await setup({ chunkPages: 4 });
      expect(await t.run(true, mapGpaPresets[name])).toEqual(
        failed(1, 1, START, END, { kind: 'retry-unsupported', r11: (S + 4n * P) | SH }),
      );
      expect(t.vmm.calls).toEqual([call(S | SH, 16n * P)]);
    },
  );

  it.each(['tdxGuestCrate', 'oak'] as const)(
    '%s: a no-progress RETRY fails with retry-unsupported after one call',
    async (name) => {
      const t = await setup({ noProgressCalls: new Set([0]) });
      expect(await t.run(false, mapGpaPresets[name])).toEqual(
        failed(1, 1, START, END, { kind: 'retry-unsupported', r11: S }),
      );
      expect(t.vmm.calls.length).toBe(1);
    },
  );

  it.each(['tdxGuestCrate', 'oak'] as const)('%s: INVALID_OPERAND is a status failure', async (name) => {
    const t = await setup({ script: replies({ r10: TdvmcallStatus.INVALID_OPERAND, r11: S }) });
    expect(await t.run(false, mapGpaPresets[name])).toEqual(failed(1, 0, START, END, invalidOperand));
  });
});

describe('linux, edk2, tdShim: start ≤ R11 < end with the shared bit, 3 no-progress, R11 alignment not checked', () => {
  it.each(LINUX_LIKE)(
    '%s: a KVM-style R11 (shared bit kept) on a to-shared request is followed',
    async (name) => {
      const t = await setup({ script: replies(retry((S + 4n * P) | SH, 4)) });
      expect(await t.run(true, mapGpaPresets[name])).toEqual({ kind: 'ok', calls: 2, retries: 1 });
      expect(t.vmm.calls).toEqual([call(S | SH, 16n * P), call((S + 4n * P) | SH, 12n * P)]);
    },
  );

  it.each(LINUX_LIKE)(
    '%s: R11 without the shared bit on a to-shared request is out of range',
    async (name) => {
      const t = await setup({ script: replies(retry(S + 4n * P, 4)) });
      expect(await t.run(true, mapGpaPresets[name])).toEqual(
        failed(1, 1, START, END, { kind: 'r11-out-of-range', r11: S + 4n * P }),
      );
      expect(t.vmm.calls.length).toBe(1);
    },
  );

  it.each(LINUX_LIKE)('%s: R11 = end and R11 < start are out of range', async (name) => {
    for (const r11 of [E | SH, (S - P) | SH]) {
      const t = await setup({ script: replies(retry(r11)) });
      expect(await t.run(true, mapGpaPresets[name])).toEqual(
        failed(1, 1, START, END, { kind: 'r11-out-of-range', r11 }),
      );
      expect(t.vmm.calls.length).toBe(1);
    }
  });

  it.each(LINUX_LIKE)('%s: 2 no-progress RETRYs then SUCCESS is ok; the 3rd fails', async (name) => {
    const within = await setup({ noProgressCalls: new Set([0, 1]) });
    expect(await within.run(true, mapGpaPresets[name])).toEqual({ kind: 'ok', calls: 3, retries: 2 });
    const past = await setup({ noProgressCalls: new Set([0, 1, 2]) });
    expect(await past.run(true, mapGpaPresets[name])).toEqual(
      failed(3, 3, START, END, { kind: 'no-progress', retries: 3 }),
    );
    expect(past.vmm.calls.length).toBe(3);
  });

  it.each(LINUX_LIKE)(
    '%s: an unaligned R11 is taken as the next R12 (then the VMM refuses it)',
    async (name) => {
      const r11 = (S + P + 0x800n) | SH;
      const t = await setup({ script: replies(retry(r11, 1)) });
      const outcome = await t.run(true, mapGpaPresets[name]);
      expect(outcome).toMatchObject({
        kind: 'failed',
        calls: 2,
        retries: 1,
        requestedEnd: END,
        failure: alignError,
      });
      expect(t.vmm.calls).toEqual([call(S | SH, 16n * P), call(r11, (E | SH) - r11)]);
    },
  );

  it.each(LINUX_LIKE)('%s: no call bound, so one-byte progress runs into the fuse', async (name) => {
    expect(mapGpaPresets[name].callBound).toBeUndefined();
    const t = await setup({ script: (c) => retry(c.r12 + 1n) });
    expect(await t.run(false, mapGpaPresets[name], 8)).toMatchObject({
      kind: 'failed',
      calls: 8,
      retries: 8,
      failure: { kind: 'would-not-terminate', calls: 8 },
    });
    expect(t.vmm.calls.map((c) => c.r12)).toEqual(Array.from({ length: 8 }, (_, i) => S + BigInt(i)));
  });

  it('linux: convertedEnd is page-granular after an unaligned R11 (rounded down)', async () => {
    const t = await setup({ script: replies(retry((S + P + 0x800n) | SH, 1)) });
    expect(await t.run(true, mapGpaPresets.linux)).toEqual(failed(2, 1, START + PAGE, END, alignError));
    const bytes = await setup({ script: (c) => retry(c.r12 + 1n) });
    expect(await bytes.run(true, mapGpaPresets.linux, 8)).toEqual(
      failed(8, 8, START, END, { kind: 'would-not-terminate', calls: 8 }),
    );
  });

  it('linux: setShared after an unaligned R11 reports whole pages: first converted, rest unknown', async () => {
    const { module, td } = await setupGuestTd({ vmm: { script: replies(retry((S + P + 0x800n) | SH, 1)) } });
    const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 2 ** 21, policy: 'linux' });
    const result = await guest.setShared(START, PAGES * PAGE);
    expect(result).toMatchObject({
      kind: 'failed',
      mapGpaCalls: 2,
      pages: [
        { start: START, end: START + PAGE, outcome: 'converted' },
        { start: START + PAGE, end: END, outcome: 'unknown' },
      ],
    });
    for (const run of guest.ledger.entries()) expect([run.start % PAGE, run.end % PAGE]).toEqual([0, 0]);
    expect(guest.check(module, td.tdr)).toEqual([]);
  });
});

describe('asterinas: R11 compared without the shared bit, R11 must be aligned (reference §6, §6.1)', () => {
  const { asterinas } = mapGpaPresets;

  it('a KVM-style R11 that keeps the shared bit on a to-shared request fails', async () => {
    const t = await setup({ chunkPages: 4 });
    expect(await t.run(true, asterinas)).toEqual(
      failed(1, 1, START, END, { kind: 'r11-out-of-range', r11: (S + 4n * P) | SH }),
    );
    expect(t.vmm.calls).toEqual([call(S | SH, 16n * P)]);
  });

  it('the same R11 on a to-private request passes', async () => {
    const t = await setup({ chunkPages: 4 });
    expect(await t.run(false, asterinas)).toEqual({ kind: 'ok', calls: 4, retries: 3 });
    expect(t.vmm.calls[1]).toEqual(call(S + 4n * P, 12n * P));
  });

  it('an R11 without the shared bit on a to-shared request passes; the next R12 gets the shared bit back', async () => {
    const t = await setup({ script: replies(retry(S + 4n * P, 4)) });
    expect(await t.run(true, asterinas)).toEqual({ kind: 'ok', calls: 2, retries: 1 });
    expect(t.vmm.calls).toEqual([call(S | SH, 16n * P), call((S + 4n * P) | SH, 12n * P)]);
  });

  it('an unaligned R11 fails with r11-unaligned', async () => {
    const r11 = S + P + 0x800n;
    const t = await setup({ script: replies(retry(r11, 1)) });
    expect(await t.run(false, asterinas)).toEqual(failed(1, 1, START, END, { kind: 'r11-unaligned', r11 }));
    expect(t.vmm.calls.length).toBe(1);
  });

  it('the 3rd no-progress RETRY fails', async () => {
    const t = await setup({ noProgressCalls: new Set([0, 1, 2]) });
    expect(await t.run(false, asterinas)).toEqual(
      failed(3, 3, START, END, { kind: 'no-progress', retries: 3 }),
    );
  });
});

describe('openvmm: no R11 validation, no budget, no bound (reference §6, §6.1)', () => {
  const { openvmm } = mapGpaPresets;

  it('R11 ≥ end ends the loop as ok although the VMM converted only the first chunk', async () => {
    const t = await setup({ script: replies(retry(E | SH, 4)) });
    expect(await t.run(true, openvmm)).toEqual({ kind: 'ok', calls: 1, retries: 1 });
    const ept = t.module.sharedEpt(t.td.tdr);
    const mapped = Array.from({ length: PAGES }, (_, i) => ept.lookup(START + i * PAGE) !== undefined);
    expect(mapped).toEqual([...Array(4).fill(true), ...Array(12).fill(false)]);
    expect(t.vmm.calls.length).toBe(1);
  });

  it('R11 below the start moves backwards: the next call starts at R11', async () => {
    const t = await setup({ script: replies(retry(S - 2n * P)) });
    expect(await t.run(false, openvmm)).toEqual({ kind: 'ok', calls: 2, retries: 1 });
    expect(t.vmm.calls).toEqual([call(S, 16n * P), call(S - 2n * P, 18n * P)]);
  });

  it('R11 with the shared bit dropped makes the next call a to-private request (the honest VMM refuses it)', async () => {
    const t = await setup({ script: replies(retry(S + 4n * P, 4)) });
    expect(await t.run(true, openvmm)).toEqual(failed(2, 1, START + 4 * PAGE, END, invalidOperand));
    expect(t.vmm.calls).toEqual([call(S | SH, 16n * P), call(S + 4n * P, (E | SH) - (S + 4n * P))]);
  });

  it('20 no-progress RETRYs do not stop it (linux would have failed at the 3rd)', async () => {
    const t = await setup({ noProgressCalls: new Set(Array.from({ length: 20 }, (_, i) => i)) });
    expect(await t.run(true, openvmm)).toEqual({ kind: 'ok', calls: 21, retries: 20 });
  });

  it('an unaligned R11 is taken as is', async () => {
    const r11 = S + P + 0x800n;
    const t = await setup({ script: replies(retry(r11, 1)) });
    expect(await t.run(false, openvmm)).toMatchObject({ kind: 'failed', calls: 2, failure: alignError });
    expect(t.vmm.calls[1]).toEqual(call(r11, E - r11));
  });
});

describe('coconutSvsm: no R11 validation; the next size is end − R11 modulo 2^64 (reference §6.1)', () => {
  const { coconutSvsm } = mapGpaPresets;

  it('R11 past the end → next call with R13 = (end − R11) mod 2^64, which the honest VMM rejects', async () => {
    const r11 = (E | SH) + P;
    const t = await setup({ script: replies(retry(r11, 4)) });
    // convertedEnd: the preset trusts R11, which claims the whole range (clamped to it).
    expect(await t.run(true, coconutSvsm)).toEqual(failed(2, 1, END, END, invalidOperand));
    expect(t.vmm.calls).toEqual([call(S | SH, 16n * P), call(r11, (1n << 64n) - P)]);
  });

  it('R11 = end → next call with R13 = 0, which the honest VMM rejects', async () => {
    const t = await setup({ script: replies(retry(E)) });
    expect(await t.run(false, coconutSvsm)).toEqual(failed(2, 1, END, END, invalidOperand));
    expect(t.vmm.calls).toEqual([call(S, 16n * P), call(E, 0n)]);
  });

  it('R11 below the start moves backwards', async () => {
    const t = await setup({ script: replies(retry(S - 3n * P)) });
    expect(await t.run(false, coconutSvsm)).toEqual({ kind: 'ok', calls: 2, retries: 1 });
    expect(t.vmm.calls).toEqual([call(S, 16n * P), call(S - 3n * P, 19n * P)]);
  });

  it('no-progress RETRYs forever run into the fuse', async () => {
    const t = await setup({ script: (c) => retry(c.r12) });
    expect(await t.run(true, coconutSvsm, 9)).toEqual(
      failed(9, 9, START, END, { kind: 'would-not-terminate', calls: 9 }),
    );
    expect(t.vmm.calls.length).toBe(9);
  });
});

describe('strict: fails on every hostile R11 that another preset accepts', () => {
  interface Hostile {
    readonly name: string;
    readonly toShared: boolean;
    readonly r11: bigint;
    readonly strict: 'r11-out-of-range' | 'r11-unaligned';
    /** The presets that go on (the VMM then answers SUCCESS), as the reference describes them. */
    readonly acceptedBy: MapGpaPresetName[];
  }
  const unchecked: MapGpaPresetName[] = ['linux', 'edk2', 'tdShim', 'openvmm', 'coconutSvsm'];
  const hostile: Hostile[] = [
    {
      name: 'unaligned inside the range (to shared)',
      toShared: true,
      r11: (S + P + 0x800n) | SH,
      strict: 'r11-unaligned',
      acceptedBy: unchecked,
    },
    {
      name: 'unaligned inside the range (to private)',
      toShared: false,
      r11: S + 5n * P + 8n,
      strict: 'r11-unaligned',
      acceptedBy: unchecked,
    },
    {
      name: 'one-byte progress',
      toShared: true,
      r11: (S | SH) + 1n,
      strict: 'r11-unaligned',
      acceptedBy: unchecked,
    },
    {
      name: 'at the end',
      toShared: true,
      r11: E | SH,
      strict: 'r11-out-of-range',
      acceptedBy: ['openvmm', 'coconutSvsm'],
    },
    {
      name: 'past the end',
      toShared: false,
      r11: E + 8n * P,
      strict: 'r11-out-of-range',
      acceptedBy: ['openvmm', 'coconutSvsm'],
    },
    {
      name: 'below the start',
      toShared: true,
      r11: (S - P) | SH,
      strict: 'r11-out-of-range',
      acceptedBy: ['openvmm', 'coconutSvsm'],
    },
    {
      name: 'shared bit dropped on a to-shared request',
      toShared: true,
      r11: S + 4n * P,
      strict: 'r11-out-of-range',
      acceptedBy: ['asterinas', 'openvmm', 'coconutSvsm'],
    },
    {
      name: 'shared bit added on a to-private request',
      toShared: false,
      r11: (S + 4n * P) | SH,
      strict: 'r11-out-of-range',
      acceptedBy: ['openvmm', 'coconutSvsm'],
    },
  ];

  it.each(hostile)('R11 $name: strict fails with $strict; accepted by $acceptedBy', async (h) => {
    const accepted: MapGpaPresetName[] = [];
    for (const name of ALL) {
      const t = await setup({
        script: (_c, i) => (i === 0 ? retry(h.r11) : { r10: TdvmcallStatus.SUCCESS }),
      });
      const outcome = await t.run(h.toShared, mapGpaPresets[name]);
      if (outcome.kind === 'ok') accepted.push(name);
      if (name === 'strict') {
        expect(outcome).toEqual(failed(1, 1, START, END, { kind: h.strict, r11: h.r11 }));
        expect(t.vmm.calls.length).toBe(1);
      }
    }
    expect(accepted).toEqual(h.acceptedBy);
  });

  it("strict's R11 rules are the union of the others' (bounds with the shared bit, aligned, within request)", () => {
    expect(mapGpaPresets.strict).toMatchObject({
      request: 'whole',
      onRetry: 'loop',
      noProgressLimit: 3,
      r11: { bounds: 'with-shared-bit', aligned: true, withinRequest: true },
    });
    expect(mapGpaPresets.strict.callBound(PAGES)).toBe(3 * PAGES + 1);
  });
});
