import { tdgAccept } from '@tdxsim/guest';
import type { GuestCpu } from '@tdxsim/tdx-module';
import { assertInvariants, checkVmmView } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import type { KvmVmm } from '../../src/index.js';
import {
  accept,
  BACKINGS,
  guestExpect,
  guestFill,
  guestTouch,
  hostExpect,
  hostFill,
  MIB2,
  PAGE,
  PER_CPU_DATA_SIZE,
  S,
  toPrivate,
  toShared,
  upmVm,
} from './upm-harness.js';

// Follows tools/testing/selftests/kvm/x86/private_mem_conversions_test.c (Linux): its explicit-conversion and
// punch-hole guest programs, run by one or several vCPUs on their own regions, at each backing size. The selftest's
// VM is a KVM_X86_SW_PROTECTED_VM whose memory starts shared and needs no ACCEPT; a TD's memory starts private and
// a guest ACCEPTs what it converts to private, so each scenario first makes its region shared, and every conversion
// to private is MapGPA then ACCEPT. The selftest's userspace answers MapGPA by setting the attributes (and, in its
// second pass, fallocate on guest_memfd): here KVM's default userspace sets the attributes and, for do_fallocate, the
// host punches the hole.

/** GUEST_STAGE(offset, size) of the selftest. */
const TEST_RANGES: readonly (readonly [number, number])[] = [
  [0, PAGE],
  [0, MIB2],
  [PAGE, PAGE],
  [PAGE, MIB2],
  [MIB2, PAGE],
];

const DEF_P = 0xaa;
const INIT_P = 0xcc;
const [P1, P2, P3, P4] = [0x11, 0x22, 0x33, 0x44];

/** guest_test_explicit_conversion, with the host's SYNC_SHARED / SYNC_PRIVATE answers inline. */
async function explicitConversion(
  kvm: KvmVmm,
  cpu: GuestCpu,
  base: number,
  doFallocate: boolean,
): Promise<void> {
  const size = PER_CPU_DATA_SIZE;
  await toShared(cpu, base, size);
  await guestFill(cpu, base, size, DEF_P, 'shared');
  await guestExpect(cpu, base, size, DEF_P, 'shared');
  // SYNC_SHARED: the host sees the guest's pattern and writes its own.
  hostExpect(kvm, base, size, DEF_P);
  hostFill(kvm, base, size, INIT_P);
  await guestExpect(cpu, base, size, INIT_P, 'shared');

  for (const [offset, length] of TEST_RANGES) {
    const gpa = base + offset;
    await guestFill(cpu, gpa, length, P1, 'shared');
    await toPrivate(cpu, gpa, length);
    if (length <= PAGE) {
      await guestFill(cpu, gpa, length, P2, 'private');
      // SYNC_PRIVATE: the host still sees the shared data; the private data is not its to see.
      hostExpect(kvm, gpa, length, P1);
      await guestExpect(cpu, gpa, length, P2, 'private');
      if (gpa > base) await guestExpect(cpu, base, gpa - base, INIT_P, 'shared');
      if (gpa + length < base + size)
        await guestExpect(cpu, gpa + length, base + size - gpa - length, INIT_P, 'shared');
      // Odd pages back to shared (holes in a private range); there are none in a one-page range, whose page 0 is
      // checked as SYNC_PRIVATE.
      hostExpect(kvm, gpa, PAGE, P1);
    } else {
      await guestFill(cpu, gpa, PAGE, P2, 'private');
      // Holes in a private range: odd pages back to shared — the shared data from before the private period is there.
      for (let j = PAGE; j < length; j += 2 * PAGE) {
        await toShared(cpu, gpa + j, PAGE);
        hostExpect(kvm, gpa + j, PAGE, P1);
        await guestExpect(cpu, gpa + j, PAGE, P1, 'shared');
        hostFill(kvm, gpa + j, PAGE, P3);
        await guestExpect(cpu, gpa + j, PAGE, P3, 'shared');
        if (j > 64 * PAGE) break; // the rest repeats; 32 holes are plenty
      }
    }
    // The whole range back to shared; the guest writes P3, the host checks it and answers P4.
    await toShared(cpu, gpa, length);
    if (doFallocate) await kvm.punchHole(gpa, length);
    await guestFill(cpu, gpa, length, P3, 'shared');
    hostExpect(kvm, gpa, length, P3);
    hostFill(kvm, gpa, length, P4);
    await guestExpect(cpu, gpa, length, P4, 'shared');
    await guestFill(cpu, gpa, length, INIT_P, 'shared');
    // Free all private memory so the next range starts clean.
    await toShared(cpu, base, size);
    await kvm.punchHole(base, size);
  }
}

/** guest_test_punch_hole: holes punched in guest_memfd without a conversion zap the pages; the next fault zeroes. */
async function punchHoleTest(kvm: KvmVmm, cpu: GuestCpu, base: number, precise: boolean): Promise<void> {
  const size = PER_CPU_DATA_SIZE;
  // The whole region private; in a TD what an earlier pass left accepted is punched first, so that every page is
  // accepted once.
  await kvm.punchHole(base, size);
  await toPrivate(cpu, base, size);
  for (const [offset, length] of TEST_RANGES) {
    const gpa = base + offset;
    await kvm.punchHole(base, size);
    // Punched: nothing of the region is mapped private any more (the next access faults).
    expect(kvm.mirror.leaves(base, base + size)).toEqual([]);
    // Fault in and initialise; a TD must accept the new (PENDING) pages first.
    const [start, bytes] = precise ? [gpa, length] : [base, size];
    expect(await guestTouch(cpu, start)).toBe('ve');
    await accept(cpu, start, bytes);
    await guestFill(cpu, start, bytes, INIT_P, 'private');
    await guestExpect(cpu, start, bytes, INIT_P, 'private');
    // Punch the target range: reads after it (and the ACCEPT the TD needs) return zeros.
    await kvm.punchHole(gpa, length);
    expect(await guestTouch(cpu, gpa)).toBe('ve');
    await accept(cpu, gpa, length);
    await guestExpect(cpu, gpa, length, 0, 'private');
  }
}

/** The guest program of the selftest (guest_code): both conversion passes, both punch-hole passes. */
async function guestCode(kvm: KvmVmm, cpu: GuestCpu, base: number): Promise<void> {
  await explicitConversion(kvm, cpu, base, false);
  await explicitConversion(kvm, cpu, base, true);
  await punchHoleTest(kvm, cpu, base, false);
  await punchHoleTest(kvm, cpu, base, true);
}

const BASE_DATA_GPA = 2 ** 32;
/**
 * `pnpm test` runs the several-vCPU passes at 2M backing only, with host threads converting; TDXSIM_LONG=1
 * (`pnpm explore:long`) runs both at every backing.
 */
const LONG = process.env['TDXSIM_LONG'] === '1';

describe.each(BACKINGS)('private_mem_conversions_test at $name backing', (backing) => {
  const perCpu = Math.ceil(PER_CPU_DATA_SIZE / backing.alignment) * backing.alignment;

  it('one vCPU: explicit conversions (data on each side, shared data kept across private periods), punch hole', async () => {
    const { module, kvm } = await upmVm(backing.options);
    await guestCode(kvm, kvm.td.guest(0), BASE_DATA_GPA);
    expect(kvm.dead).toBeUndefined();
    expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
    assertInvariants(module);
  }, 60_000);

  it.runIf(LONG || backing.name === '2M')(
    'two vCPUs run the selftest while a host thread converts and punches a third region that a third vCPU keeps touching',
    async () => {
      const { module, kvm } = await upmVm(backing.options, 3);
      const third = BASE_DATA_GPA + 2 * perCpu;
      let running = true;
      const host = (async () => {
        for (let round = 0; running; round++) {
          await kvm.setMemoryAttributes(third, 16 * PAGE, round % 2 === 0 ? 'shared' : 'private');
          await kvm.punchHole(third, 16 * PAGE);
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const toucher = (async () => {
        const cpu = kvm.td.guest(2);
        for (let i = 0; running; i++) {
          const page = third + (i % 16) * PAGE;
          // Private or shared alias, whatever the attribute: a memory-fault exit converts; a new page is a #VE.
          const kind = await guestTouch(cpu, i % 3 === 0 ? S + page : page);
          if (kind !== 'ok' && kind !== 've') expect(['ok', 've']).toContain(kind);
          if (kind === 've') await tdgAccept(cpu, page, 0);
        }
      })();
      await Promise.all(
        [0, 1].map((index) => guestCode(kvm, kvm.td.guest(index), BASE_DATA_GPA + index * perCpu)),
      );
      running = false;
      await Promise.all([host, toucher]);
      expect(kvm.counters.memoryFaultExits).toBeGreaterThan(0);
      expect(kvm.dead).toBeUndefined();
      expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
      assertInvariants(module);
    },
    120_000,
  );

  it.runIf(LONG)(
    'two vCPUs (-n 2), each on its own region, at once',
    async () => {
      const { module, kvm } = await upmVm(backing.options, 2);
      await Promise.all(
        [0, 1].map((index) => guestCode(kvm, kvm.td.guest(index), BASE_DATA_GPA + index * perCpu)),
      );
      expect(kvm.dead).toBeUndefined();
      expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
      assertInvariants(module);
    },
    120_000,
  );
});
