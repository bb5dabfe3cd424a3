/**
 * Issue 10, "Storm guard": a per-operation hypercall budget in the policy, on by default in `strict`, sized for legal
 * progress on the ranges real guests convert, stopping a VMM that progresses one page per call over a huge range
 * with a failure that says so; the count is in the result and the trace.
 */
import { MemoryTraceSink } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  GuestError,
  type GuestPolicy,
  guestPresets,
  mapGpaPresets,
  STORM_GUARD_CALLS,
  TdGuest,
} from '../src/index.js';
import { setupGuestTd, type TestVmmOptions } from './test-vmm.js';

const PAGE = 4096;
const MIB = 2 ** 20;
const GIB = 2 ** 30;

const guarded = (budget: number): GuestPolicy => ({
  name: `strict, ${budget} calls`,
  mapGpa: { ...guestPresets.strict.mapGpa, hypercallBudget: budget },
  accept: guestPresets.strict.accept,
});

async function boot(policy: GuestPolicy | 'strict' | 'linux', vmm: TestVmmOptions, memoryBytes = 64 * MIB) {
  const trace = new MemoryTraceSink();
  const t = await setupGuestTd({ vmm });
  const guest = await TdGuest.boot(t.td.guest(0), { memoryBytes, policy, trace });
  const notes = () => trace.events.flatMap((e) => (e.kind === 'note' ? [e.text] : []));
  return { ...t, guest, notes };
}

describe('the storm guard', () => {
  it('stops a VMM that progresses one page per call once the budget is spent: call-bound, guard storm', async () => {
    const t = await boot(guarded(100), { chunkPages: 1 });
    const result = await t.guest.setShared(0, 1000 * PAGE);
    expect(result).toMatchObject({
      kind: 'failed',
      mapGpaCalls: 100,
      failure: { step: 'map-gpa', failure: { kind: 'call-bound', calls: 100, limit: 100, guard: 'storm' } },
    });
    expect(t.vmm.calls).toHaveLength(100);
    // What the VMM acknowledged is shared; the last request asked for everything after it: unknown, quarantined.
    expect(result.kind === 'failed' && result.pages).toEqual([
      { start: 0, end: 100 * PAGE, outcome: 'converted' },
      { start: 100 * PAGE, end: 1000 * PAGE, outcome: 'unknown' },
    ]);
    expect(t.notes().filter((n) => n.startsWith('storm guard'))).toEqual([
      "storm guard: stopped after 100 MapGPA hypercalls in one operation, its budget (100); the VMM's progress was too slow for the range",
    ]);
    expect(t.notes()).toContain(
      'operation 0x0..0x3e8000 to shared: MapGPA failed after 100 hypercalls (storm guard 100 per operation)',
    );
    expect(t.guest.check(t.module, t.td.tdr)).toEqual([]);
  });

  it('counts every MapGPA of one conversion, across its segments', async () => {
    // Each operation has its own budget: 8 pages at one page per call fit in 12.
    const v = await boot(guarded(12), { chunkPages: 1 });
    expect(await v.guest.setShared(8 * PAGE, 8 * PAGE)).toMatchObject({ kind: 'ok', mapGpaCalls: 8 });
    // [0, 24 pages) with the middle 8 already shared is two segments of 8 pages: 8 calls, then 4 more.
    const result = await v.guest.setShared(0, 24 * PAGE);
    expect(result).toMatchObject({
      kind: 'failed',
      mapGpaCalls: 12,
      failure: { failure: { kind: 'call-bound', calls: 12, limit: 12, guard: 'storm' } },
    });
    expect(v.vmm.calls.slice(8).map((c) => Number(c.r13) / PAGE)).toEqual([
      8, 7, 6, 5, 4, 3, 2, 1, 8, 7, 6, 5,
    ]);
  });

  it('guests without it (linux) go on: the same range completes in 1000 calls', async () => {
    const t = await boot('linux', { chunkPages: 1 });
    expect(await t.guest.setShared(0, 1000 * PAGE)).toMatchObject({ kind: 'ok', mapGpaCalls: 1000 });
  });

  it("strict's budget covers legal progress on a multi-GiB swiotlb at one page per call, and stops a 70 TiB hole", () => {
    expect(guestPresets.strict.mapGpa.hypercallBudget).toBe(STORM_GUARD_CALLS);
    const pages4G = (4 * GIB) / PAGE;
    // Worst legal case of strict: two RETRYs without progress before each page of progress.
    expect(STORM_GUARD_CALLS).toBeGreaterThanOrEqual(3 * pages4G + 1);
    expect(STORM_GUARD_CALLS).toBeGreaterThanOrEqual((16 * GIB) / PAGE);
    // A 70 TiB MMIO hole at one page per call: the range bound alone would allow 3 × 18,790,481,920 + 1 calls.
    const hole = (70 * 2 ** 40) / PAGE;
    expect(mapGpaPresets.strict.callBound(hole)).toBe(3 * hole + 1);
    expect(STORM_GUARD_CALLS).toBeLessThan(hole / 4000);
  });

  it('strict converts a 64 MiB swiotlb at one page per call (16,384 calls) within its default budget', async () => {
    const t = await boot('strict', { chunkPages: 1 });
    expect(await t.guest.setShared(0, 64 * MIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 16_384 });
  });

  it('a budget must be a positive integer (checked when the guest boots)', async () => {
    for (const bad of [0, -1, 1.5, Number.NaN, '10', 10n]) {
      const t = await setupGuestTd({});
      const policy = { ...guarded(1), mapGpa: { ...guestPresets.strict.mapGpa, hypercallBudget: bad } };
      await expect(
        TdGuest.boot(t.td.guest(0), { memoryBytes: MIB, policy: policy as unknown as GuestPolicy }),
      ).rejects.toSatisfy(
        (e: unknown) =>
          GuestError.is(e) && e.code === 'INVALID_OPTION' && e.argument === 'policy.mapGpa.hypercallBudget',
      );
    }
  });
});
