/**
 * Issue 10, "What must be shown" (boundaries): per preset, over edge-biased ranges, against the KVM and the
 * Hyper-V backends: every MapGPA request the guest sends is what the GHCI says (except the edge defects the presets
 * keep from their real guest, which must show exactly where the README says), and `strict` converts every range to
 * shared and back with its ledger equal to the module's truth.
 */

import { hypervVmm } from '@tdxsim/host-hyperv';
import { kvmVmm } from '@tdxsim/host-kvm';
import {
  assertInvariants,
  composeTd,
  type GuestCpu,
  Reg,
  sharedBit,
  TdcallLeaf,
  TdvmcallSubfunction,
} from '@tdxsim/tdx-module';
import type { ContainerModule } from 'inversify';
import { describe, expect } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import { type GuestPresetName, guestPresets, TdGuest } from '../../src/index.js';
import { type EdgeRange, edgeRange } from './edge-ranges.js';
import { ghciViolation, type MapGpaRequest } from './ghci-rule.js';
import { expectedEdgeDefect } from './known-defects.js';

const PAGE = 4096;
const PRESETS = Object.keys(guestPresets) as GuestPresetName[];
const BACKENDS: readonly { name: string; vmm: (seed: number) => ContainerModule }[] = [
  { name: 'KVM', vmm: (seed) => kvmVmm({ seed, pendingEventRate: 0.25 }) },
  { name: 'Hyper-V', vmm: (seed) => hypervVmm({ seed, chunkPages: 4096 }) },
];
/**
 * For the ranges that span 1G blocks: KVM with huge pages (its 2M private mappings). What these cases check is the
 * MapGPA arithmetic over GiBs; on the default 4K KVM every GiB accepted back is 262,144 EPT-violation exits, which made
 * one case cost minutes of CPU without checking anything the 4K small ranges above do not.
 */
const KVM_HUGE_PAGES: (typeof BACKENDS)[number] = {
  name: 'KVM (huge pages)',
  vmm: (seed) => kvmVmm({ seed, pendingEventRate: 0.25, hugePages: true }),
};
/** Cases per preset and backend (each a TD built, a range to shared and back). */
const RUNS = 16;

/** Records the MapGPA requests (input registers of TDG.VP.VMCALL<MapGPA>) that go through `cpu`. */
function recordMapGpa(cpu: GuestCpu): MapGpaRequest[] {
  const requests: MapGpaRequest[] = [];
  const inner = cpu.tdcall.bind(cpu);
  cpu.tdcall = (rax, regs) => {
    if (Number(rax & 0xffffn) === TdcallLeaf.VP_VMCALL && regs[Reg.R11] === TdvmcallSubfunction.MAP_GPA) {
      requests.push({
        r10: regs[Reg.R10] as bigint,
        r11: regs[Reg.R11] as bigint,
        r12: regs[Reg.R12] as bigint,
        r13: regs[Reg.R13] as bigint,
      });
    }
    return inner(rax, regs);
  };
  return requests;
}

async function roundTrip(
  preset: GuestPresetName,
  backend: (typeof BACKENDS)[number],
  range: EdgeRange,
  seed: number,
) {
  const composed = await composeTd({
    vmm: backend.vmm(seed),
    build: { gpaw: range.gpaw, vcpus: 1 },
    sim: { seed, module: { tdmr: { base: 2 ** 36, size: 2 ** 36 } } },
  });
  const cpu = composed.td.guest(0);
  const requests = recordMapGpa(cpu);
  const top = sharedBit(range.gpaw);
  const guest = await TdGuest.boot(cpu, { memoryBytes: top, policy: preset });
  const start = range.startPage * PAGE;
  const end = start + range.pages * PAGE;
  const steps: { toShared: boolean; requests: MapGpaRequest[]; kind: string }[] = [];
  for (const toShared of [true, false]) {
    if (guest.ledger.runs({ start, end }).some((run) => run.state === 'quarantined')) break;
    const from = requests.length;
    const result = toShared
      ? await guest.setShared(start, end - start)
      : await guest.setPrivate(start, end - start);
    steps.push({ toShared, requests: requests.slice(from), kind: result.kind });
  }
  return { composed, guest, steps, start, end };
}

/** Checks every request of the round trip against the GHCI rule and the documented defects; strict must convert. */
async function checkRoundTrip(
  preset: GuestPresetName,
  backend: (typeof BACKENDS)[number],
  range: EdgeRange,
  seed: number,
) {
  const { composed, guest, steps, start, end } = await roundTrip(preset, backend, range, seed);
  for (const step of steps) {
    const conversion = { gpaw: range.gpaw, toShared: step.toShared, start, end };
    const expected = expectedEdgeDefect(preset, conversion);
    const seen = step.requests.map((request) => ghciViolation(request, conversion));
    if (expected === undefined) {
      expect(seen.filter((v) => v !== undefined)).toEqual([]);
    } else {
      // The defect shows on the first request; an honest VMM refuses it or does something else with it.
      expect(seen[0]).toBe(expected);
    }
  }
  if (preset === 'strict') {
    expect(steps.map((step) => step.kind)).toEqual(['ok', 'ok']);
    expect(guest.check(composed.module, composed.td.tdr)).toEqual([]);
    expect(guest.ledger.runs({ start, end })).toEqual([{ start, end, state: 'private-accepted' }]);
    assertInvariants(composed.module);
  }
}

const seeds = fc.integer({ min: 1, max: 2 ** 30 });

describe.each(BACKENDS)('edges of the GPA space against the $name backend', (backend) => {
  describe.each(PRESETS)('preset %s', (preset) => {
    // The Hyper-V model AUGs a whole 2M block at 2M and never demotes it, so a guest that accepts 4K by 4K
    // (Asterinas) finds no 4K page to accept there: the module exits to the VMM for ever (reported to the Hyper-V
    // backend's owners). Such ranges are left out for that pair only.
    const wholeBlock = (range: EdgeRange) =>
      Math.ceil(range.startPage / 512) * 512 + 512 <= range.startPage + range.pages;
    const ranges =
      backend.name === 'Hyper-V' && preset === 'asterinas'
        ? edgeRange('small').filter((range) => !wholeBlock(range))
        : edgeRange('small');
    test.prop([ranges, seeds], { numRuns: RUNS })(
      'every MapGPA of a round trip follows the GHCI rule, but for the documented edge defect of its real guest',
      (range, seed) => checkRoundTrip(preset, backend, range, seed),
    );
  });

  test.prop([edgeRange('spans'), seeds], { numRuns: 2 })(
    'strict converts ranges spanning 1G blocks from 0 and up to the top, with legal requests only',
    (range, seed) => checkRoundTrip('strict', backend.name === 'KVM' ? KVM_HUGE_PAGES : backend, range, seed),
  );
});

// Spans of several 1G blocks for every preset (KVM with huge pages only, to keep the run short). Asterinas accepts 4K by 4K, which
// over a GiB is 262,144 ACCEPTs: its MapGPA arithmetic is the same as at small sizes, checked above.
describe.each(PRESETS.filter((preset) => preset !== 'asterinas'))(
  'spans of 1G blocks, preset %s (KVM, huge pages)',
  (preset) => {
    test.prop([edgeRange('spans'), seeds], { numRuns: 2 })(
      'every MapGPA follows the GHCI rule, but for the documented edge defect of its real guest',
      (range, seed) => checkRoundTrip(preset, KVM_HUGE_PAGES, range, seed),
    );
  },
);
