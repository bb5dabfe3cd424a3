import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  assertInvariants,
  checkVmmView,
  encodeLeaf,
  type GuestCpu,
  makeGprs,
  TdcallLeaf,
  TdvmcallStatus,
  TdxStatus,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import type { KvmVmm } from '../../src/index.js';
import { BACKINGS, PAGE, S, upmVm } from './upm-harness.js';

// Follows tools/testing/selftests/kvm/x86/tdx_gmem_private_and_shared_test.c (Intel's TDX tree): one page at
// TEST_GPA (4 GiB), used by the guest through either alias and by the host through its memory, converted explicitly
// (MapGPA) or implicitly (KVM_EXIT_MEMORY_FAULT: GPA, one page, private or not), at 4K, 2M and 1G backing; the
// guest's #VE handler accepts the page it touched. That test backs shared memory with guest_memfd too (in-place
// conversion, GUEST_MEMFD_FLAG_SUPPORT_SHARED); here shared memory is the memslot's userspace memory, as merged KVM
// has it, so its assert_host_cannot_fault (the host faulting on private guest_memfd) has no counterpart: the host's
// memory is always its own. The values every guest and host access expects are the selftest's.

const TEST_GPA = 2 ** 32;

interface Fault {
  readonly gpa: number;
  readonly size: number;
  readonly private: boolean;
}

async function setup(options: object, initPrivate: boolean) {
  const faults: Fault[] = [];
  const { module, kvm } = await upmVm({
    ...options,
    onMemoryFault: (fault) => {
      faults.push({ gpa: fault.gpa, size: fault.size, private: fault.private });
      return 'convert';
    },
  });
  // Userspace's initial attributes for the test memory (GUEST_MEMFD_FLAG_INIT_PRIVATE or not).
  if (!initPrivate) await kvm.setMemoryAttributes(TEST_GPA, PAGE, 'shared');
  return { module, kvm, cpu: kvm.td.guest(0), faults };
}

/**
 * guest_use_memory: the guest reads TEST_GPA through `alias` and expects `read` (unless undefined), then writes
 * `write` (unless undefined); a #VE (PENDING page) is handled by accepting the page, as the selftest's handler does.
 */
async function guestUse(
  cpu: GuestCpu,
  alias: 'private' | 'shared',
  read: number | undefined,
  write: number | undefined,
): Promise<void> {
  const gpa = alias === 'shared' ? S + TEST_GPA : TEST_GPA;
  const access = async (data?: Uint8Array) => {
    for (;;) {
      const result = data === undefined ? await cpu.read(gpa, 1) : await cpu.write(gpa, data);
      if (result.kind !== 've') return result;
      await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
      expect(await tdgAccept(cpu, TEST_GPA, 0)).toBe(TdxStatus.SUCCESS);
    }
  };
  if (read !== undefined) expect(await access()).toMatchObject({ kind: 'ok', data: new Uint8Array([read]) });
  if (write !== undefined) expect((await access(new Uint8Array([write]))).kind).toBe('ok');
}

/** host_use_memory: the host reads its memory at TEST_GPA and expects `read`, then writes `write`. */
function hostUse(kvm: KvmVmm, read: number | undefined, write: number | undefined): void {
  if (read !== undefined) expect(kvm.readMemory(TEST_GPA, 1)).toEqual(new Uint8Array([read]));
  if (write !== undefined) kvm.writeMemory(TEST_GPA, new Uint8Array([write]));
}

async function guestMapGpa(cpu: GuestCpu, toShared: boolean): Promise<void> {
  const reply = await vmcallMapGpa(cpu, BigInt(toShared ? S + TEST_GPA : TEST_GPA), BigInt(PAGE));
  expect(reply.r10).toBe(TdvmcallStatus.SUCCESS);
}

const A = 0x41;
const B = 0x42;
const C = 0x43;
const D = 0x44;
const E = 0x45;

describe.each(BACKINGS)('tdx_gmem_private_and_shared_test at $name backing', ({ options }) => {
  const done = (module: Parameters<typeof assertInvariants>[0], kvm: KvmVmm) => {
    expect(kvm.dead).toBeUndefined();
    expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
    assertInvariants(module);
  };

  it('test_init_private: the guest reads zeros, then its own data', async () => {
    const { module, kvm, cpu, faults } = await setup(options, true);
    await guestUse(cpu, 'private', 0, A);
    await guestUse(cpu, 'private', A, B);
    expect(faults).toEqual([]);
    done(module, kvm);
  });

  it('test_init_shared: the host writes first, the guest sees it through the shared alias', async () => {
    const { module, kvm, cpu, faults } = await setup(options, false);
    hostUse(kvm, 0, A);
    await guestUse(cpu, 'shared', A, B);
    hostUse(kvm, B, undefined);
    expect(faults).toEqual([]);
    done(module, kvm);
  });

  it('test_explicit_conversion_to_private: MapGPA; the private page reads zeros', async () => {
    const { module, kvm, cpu } = await setup(options, false);
    hostUse(kvm, 0, A);
    await guestUse(cpu, 'shared', A, B);
    await guestMapGpa(cpu, false);
    await guestUse(cpu, 'private', 0, C);
    // The host's memory is not the private page: it still holds what the guest shared.
    hostUse(kvm, B, undefined);
    done(module, kvm);
  });

  it.each([
    ['with write', true],
    ['with read (zeroing)', false],
  ])(
    'test_implicit_conversion_to_private %s: a memory-fault exit (private, one page), userspace converts',
    async (_name, write) => {
      const { module, kvm, cpu, faults } = await setup(options, false);
      hostUse(kvm, 0, A);
      await guestUse(cpu, 'shared', A, B);
      if (write) await guestUse(cpu, 'private', undefined, C);
      else await guestUse(cpu, 'private', 0, undefined);
      expect(faults).toEqual([{ gpa: TEST_GPA, size: PAGE, private: true }]);
      await guestUse(cpu, 'private', write ? C : 0, C);
      done(module, kvm);
    },
  );

  it('test_explicit_conversion_to_shared: MapGPA; the guest sees the host memory', async () => {
    const { module, kvm, cpu } = await setup(options, true);
    await guestUse(cpu, 'private', 0, A);
    await guestMapGpa(cpu, true);
    // The private data never reaches the host: its memory reads zeros (the selftest's in-place backing is zeroed).
    hostUse(kvm, 0, A);
    await guestUse(cpu, 'shared', A, B);
    done(module, kvm);
  });

  it.each([
    ['with write', true],
    ['with read (zeroing)', false],
  ])(
    'test_implicit_conversion_to_shared %s: a memory-fault exit (shared, one page), userspace converts',
    async (_name, write) => {
      const { module, kvm, cpu, faults } = await setup(options, true);
      await guestUse(cpu, 'private', 0, A);
      if (write) await guestUse(cpu, 'shared', undefined, B);
      else await guestUse(cpu, 'shared', 0, undefined);
      expect(faults).toEqual([{ gpa: TEST_GPA, size: PAGE, private: false }]);
      await guestUse(cpu, 'shared', write ? B : 0, C);
      hostUse(kvm, C, D);
      await guestUse(cpu, 'shared', D, E);
      done(module, kvm);
    },
  );
});
