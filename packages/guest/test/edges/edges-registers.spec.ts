/**
 * The exact registers at the edges of the GPA space (issue 10, "Boundaries"), preset by preset, against the test
 * VMM (which validates requests as KVM does): the top of the private space, GPA 0, one page, GPAW 52 — including
 * the arithmetic each real guest has there (Linux's wrapped R13, OpenVMM's bit 47), README "Edges of the GPA space".
 */
import { assertInvariants, type Gpaw, sharedBit, TdvmcallStatus } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { type GuestPresetName, guestPresets, TdGuest } from '../../src/index.js';
import { type MapGpaCall, setupGuestTd, type TestVmmOptions } from '../test-vmm.js';

const PAGE = 4096;
const P = BigInt(PAGE);
const U64 = 1n << 64n;
const PRESETS = Object.keys(guestPresets) as GuestPresetName[];

async function boot(preset: GuestPresetName, gpaw: Gpaw, vmm: TestVmmOptions = {}) {
  const setup = await setupGuestTd({ gpaw, vmm });
  const top = sharedBit(gpaw);
  const guest = await TdGuest.boot(setup.td.guest(0), { memoryBytes: top, policy: preset });
  return { ...setup, guest, top, S: BigInt(top) };
}

const call = (r12: bigint, r13: bigint): MapGpaCall => ({ r12, r13 });

describe('to shared, ending at the top of the private space (the shared alias ends at 2^GPAW)', () => {
  it.each([48, 52] as const)(
    'strict, GPAW %i: R12 = start | S, R13 = size, and it converts',
    async (gpaw) => {
      const t = await boot('strict', gpaw);
      const start = t.top - 4 * PAGE;
      expect(await t.guest.setShared(start, 4 * PAGE)).toEqual({
        kind: 'ok',
        mapGpaCalls: 1,
        acceptCalls: 0,
      });
      expect(t.vmm.calls).toEqual([call(BigInt(start) | t.S, 4n * P)]);
      expect(BigInt(start) + t.S + 4n * P).toBe(1n << BigInt(gpaw));
      expect(t.guest.ledger.stateOf(start)).toBe('shared');
      expect(await t.guest.setPrivate(start, 4 * PAGE)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
      expect(t.guest.check(t.module, t.td.tdr)).toEqual([]);
      assertInvariants(t.module);
    },
  );

  it('strict follows RETRYs up to 2^GPAW: R11 may be the last page of the shared alias', async () => {
    const t = await boot('strict', 48, { chunkPages: 1 });
    const start = t.top - 3 * PAGE;
    expect(await t.guest.setShared(start, 3 * PAGE)).toEqual({ kind: 'ok', mapGpaCalls: 3, acceptCalls: 0 });
    expect(t.vmm.calls).toEqual([
      call(BigInt(start) | t.S, 3n * P),
      call((BigInt(start) | t.S) + P, 2n * P),
      call((BigInt(start) | t.S) + 2n * P, P),
    ]);
  });

  it('linux ORs the shared bit into the end: R13 wraps to 2^64 − S + size; the VMM refuses; every page quarantined', async () => {
    const t = await boot('linux', 48);
    const start = t.top - 4 * PAGE;
    const result = await t.guest.setShared(start, 4 * PAGE);
    const r12 = BigInt(start) | t.S;
    // end | S = S, so R13 = S − (start | S) modulo 2^64.
    expect(t.vmm.calls).toEqual([call(r12, (t.S - r12 + U64) % U64)]);
    expect(t.vmm.calls[0]?.r13).toBe(U64 - t.S + 4n * P);
    expect(result).toMatchObject({
      kind: 'failed',
      failure: { step: 'map-gpa', failure: { kind: 'status', status: TdvmcallStatus.INVALID_OPERAND } },
      // The wrapped request named everything from start: the guest cannot vouch for any page of it.
      pages: [{ start, end: t.top, outcome: 'unknown' }],
    });
    expect(t.guest.ledger.runs({ start, end: t.top })).toEqual([{ start, end: t.top, state: 'quarantined' }]);
    expect(t.guest.check(t.module, t.td.tdr)).toEqual([]);
  });

  it('linux one page below the top is right (the end then has no carry into the shared bit)', async () => {
    const t = await boot('linux', 48);
    const start = t.top - 4 * PAGE;
    expect(await t.guest.setShared(start, 3 * PAGE)).toMatchObject({ kind: 'ok' });
    expect(t.vmm.calls).toEqual([call(BigInt(start) | t.S, 3n * P)]);
  });

  it('linux, a RETRY at the top: any R11 is "≥ end" (end = S) and the loop fails at once', async () => {
    const t = await boot('linux', 48, {
      script: (c) => ({ r10: TdvmcallStatus.RETRY, r11: c.r12 + P, convertPages: 1 }),
    });
    const start = t.top - 4 * PAGE;
    expect(await t.guest.setShared(start, 4 * PAGE)).toMatchObject({
      kind: 'failed',
      failure: { step: 'map-gpa', failure: { kind: 'r11-out-of-range' } },
    });
    expect(t.vmm.calls).toHaveLength(1);
  });

  it.each(PRESETS.filter((p) => p !== 'linux'))(
    '%s forms the end as (start | S) + size: right at the top',
    async (preset) => {
      const t = await boot(preset, 48);
      const start = t.top - 2 * PAGE;
      await t.guest.setShared(start, 2 * PAGE);
      expect(t.vmm.calls[0]).toEqual(call(BigInt(start) | t.S, 2n * P));
    },
  );
});

describe('GPA 0, one page', () => {
  it.each(PRESETS)('%s: R12 = S (to shared) and 0 (to private), R13 = size', async (preset) => {
    const t = await boot(preset, 48);
    await t.guest.setShared(0, PAGE);
    await t.guest.setPrivate(0, PAGE);
    expect(t.vmm.calls).toEqual([call(t.S, P), call(0n, P)]);
  });

  it('strict converts the first 4 MiB from 0 in one request each way (1G spans: edges-backends.spec.ts)', async () => {
    const t = await boot('strict', 48);
    expect(await t.guest.setShared(0, 4 * 2 ** 20)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(await t.guest.setPrivate(0, 4 * 2 ** 20)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(t.vmm.calls).toEqual([call(t.S, 4n * 2n ** 20n), call(0n, 4n * 2n ** 20n)]);
    expect(t.guest.check(t.module, t.td.tdr)).toEqual([]);
  });
});

describe('GPAW 52', () => {
  it('strict uses bit 51 everywhere, up to 2^52', async () => {
    const t = await boot('strict', 52);
    const start = t.top - PAGE;
    await t.guest.setShared(start, PAGE);
    expect(t.vmm.calls).toEqual([call(BigInt(start) + 2n ** 51n, P)]);
  });

  it('openvmm hard-codes bit 47: its to-shared R12 is a private GPA of the TD, which an honest VMM converts to private', async () => {
    const t = await boot('openvmm', 52);
    const start = 2 * 2 ** 20;
    const result = await t.guest.setShared(start, PAGE);
    expect(t.vmm.calls).toEqual([call(BigInt(start) + 2n ** 47n, P)]);
    // The VMM answered SUCCESS to what it read as a to-private request of another range: openvmm believes it shared.
    expect(result).toMatchObject({ kind: 'ok' });
    expect(t.guest.ledger.stateOf(start)).toBe('shared');
    expect(t.module.sharedEpt(t.td.tdr).lookup(start)).toBeUndefined();
  });

  it('openvmm clears bit 47 of a to-private start above 2^47 (a real address bit on GPAW 52)', async () => {
    const t = await boot('openvmm', 52);
    const start = 2 ** 47 + 2 ** 30;
    await t.guest.setShared(start, PAGE);
    await t.guest.setPrivate(start, PAGE);
    expect(t.vmm.calls.map((c) => c.r12)).toEqual([BigInt(start), BigInt(start) - 2n ** 47n]);
  });

  it('openvmm on GPAW 48 is right (bit 47 is the shared bit there)', async () => {
    const t = await boot('openvmm', 48);
    await t.guest.setShared(2 * 2 ** 20, PAGE);
    expect(t.vmm.calls).toEqual([call(2n * 2n ** 20n + t.S, P)]);
  });
});
