/**
 * The conformance kit under a scheduler (issue 12): every TD runs under a seeded random or PCT scheduler and the preset
 * guests issue each workload's conversions from every vCPU at once; the honest backends still pass every rule, a
 * broken one still fails, and bad options are refused before anything runs.
 */
import { hypervVmm } from '@tdxsim/host-hyperv';
import { kvmVmm } from '@tdxsim/host-kvm';
import { describe, expect, it } from 'vitest';
import { ConversionRounds, hostileVmms, runConformance, splitAcrossVcpus } from '../src/index.js';

const MIB = 2 ** 20;

describe('runConformance with a scheduler', () => {
  it.each([
    { name: 'kvm', backend: () => kvmVmm(), scheduler: 'pct' },
    { name: 'hyperv', backend: () => hypervVmm({ chunkPages: 512 }), scheduler: 'random' },
  ] as const)(
    '$name on 3 vCPUs under $scheduler: every rule passes',
    async ({ backend, scheduler }) => {
      const workloads: string[] = [];
      const checks = await runConformance(backend(), {
        guests: ['strict'],
        vcpus: [3],
        scheduler,
        scheduleSeed: 5,
        onWorkload: (label) => workloads.push(label),
      });
      expect(checks.filter((c) => !c.passed).map((c) => c.message)).toEqual([]);
      expect(workloads[0]).toMatch(/^3 vCPUs, guest strict, workload /);
    },
    300_000,
  );

  it('a hostile backend still fails under a scheduler', async () => {
    const hostile = hostileVmms.find((h) => h.name === 'r11-past-end');
    if (hostile === undefined) throw new Error('catalogue changed');
    const checks = await runConformance(hostile.module({ seed: 1 }), {
      guests: ['strict'],
      vcpus: [2],
      scheduler: 'pct',
    });
    expect(checks.find((c) => c.rule === 'retry-r11-in-range')?.passed).toBe(false);
  }, 300_000);

  it('bad scheduler options are refused before any TD is built', async () => {
    await expect(runConformance(kvmVmm(), { scheduler: 'fifo' as never })).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      argument: 'scheduler',
    });
    await expect(runConformance(kvmVmm(), { scheduleSeed: 1.5 })).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      argument: 'scheduleSeed',
    });
  });
});

describe('ConversionRounds', () => {
  it('one conversion per vCPU a round; a conversion back over the round’s range starts the next round', () => {
    const rounds = new ConversionRounds(3);
    expect(rounds.add({ start: 0, end: 4096, toShared: true })).toEqual([]);
    // Same direction, overlapping: joins the round.
    expect(rounds.add({ start: 0, end: 8192, toShared: true })).toEqual([]);
    // The other direction over the same page: the round so far runs first.
    expect(rounds.add({ start: 4096, end: 8192, toShared: false })).toEqual([
      [
        { start: 0, end: 4096, toShared: true },
        { start: 0, end: 8192, toShared: true },
      ],
    ]);
    expect(rounds.add({ start: 2 * MIB, end: 2 * MIB + 4096, toShared: true })).toEqual([]);
    expect(rounds.add({ start: 4 * MIB, end: 4 * MIB + 4096, toShared: false })).toHaveLength(1);
    expect(rounds.flush()).toEqual([]);
  });

  it('a range of at least one 2 MiB block per vCPU is split on 2 MiB boundaries, one part per vCPU', () => {
    expect(splitAcrossVcpus({ start: 0, end: 7 * 2 * MIB, toShared: true }, 3)).toEqual([
      { start: 0, end: 6 * MIB, toShared: true },
      { start: 6 * MIB, end: 10 * MIB, toShared: true },
      { start: 10 * MIB, end: 14 * MIB, toShared: true },
    ]);
    expect(splitAcrossVcpus({ start: 0, end: 4 * MIB, toShared: false }, 3)).toEqual([
      { start: 0, end: 4 * MIB, toShared: false },
    ]);
    const rounds = new ConversionRounds(2);
    rounds.add({ start: 0, end: 4096, toShared: true });
    // A large one ends the round begun, then runs as a round of its own.
    expect(rounds.add({ start: 1024 * MIB, end: 1032 * MIB, toShared: true })).toEqual([
      [{ start: 0, end: 4096, toShared: true }],
      [
        { start: 1024 * MIB, end: 1028 * MIB, toShared: true },
        { start: 1028 * MIB, end: 1032 * MIB, toShared: true },
      ],
    ]);
  });
});
