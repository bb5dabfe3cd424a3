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
import type { KvmVmm, KvmVmmOptions } from '../../src/index.js';
import {
  firstMismatch,
  guestExpect,
  guestFill,
  hostExpect,
  hostFill,
  PAGE,
  S,
  toShared,
  upmVm,
} from './upm-harness.js';

// Follows the TDX UPM selftest (tools/testing/selftests/kvm/x86/tdx_upm_test.c in Intel's TDX tree; the TDX
// selftests are not in mainline Linux): a 2M test area loaded with KVM_TDX_INIT_MEM_REGION, made of two general areas
// around a 40K focus area whose pages change between private and shared, explicitly (MapGPA) or implicitly (the
// guest just uses the other alias; KVM exits with KVM_EXIT_MEMORY_FAULT and userspace converts). The guest's #VE
// handler accepts a page it touches while PENDING, as the selftest's does.

const AREA = 0x8000_0000;
const AREA_SIZE = 2 ** 21;
const GENERAL_0 = 2 ** 20;
const FOCUS = AREA + GENERAL_0;
const FOCUS_SIZE = 40 * 1024;
const GENERAL_1 = FOCUS + FOCUS_SIZE;
const GENERAL_1_SIZE = AREA + AREA_SIZE - GENERAL_1;

const CONFIDENCE_CHECK = 0x11;
const HOST_FOCUS = 0x22;
const GUEST_GENERAL = 0x33;
const GUEST_FOCUS = 0x44;

/** The TD of the selftest: the host writes CONFIDENCE_CHECK in its memory, loads the area, finalizes. */
async function upmTd(options: KvmVmmOptions = {}) {
  const { module, kvm } = await upmVm(options, 1, { run: false, skipFinalize: true });
  // The host writes its memory before the guest ever runs.
  hostFill(kvm, AREA, AREA_SIZE, CONFIDENCE_CHECK);
  expect(await kvm.initMemRegion(AREA, kvm.readMemory(AREA, AREA_SIZE))).toEqual({ kind: 'ok' });
  expect(await kvm.finalize()).toBe('ok');
  for (const thread of kvm.run()) thread.catch(() => undefined);
  return { module, kvm, cpu: kvm.td.guest(0) };
}

/** A private access as the selftest's guest makes it: a #VE (PENDING page) is handled by accepting the page. */
async function privateAccess(cpu: GuestCpu, gpa: number, data: Uint8Array | undefined) {
  for (;;) {
    const result = data === undefined ? await cpu.read(gpa, PAGE) : await cpu.write(gpa, data);
    if (result.kind !== 've') return result;
    await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
    expect(await tdgAccept(cpu, result.gpa - (result.gpa % PAGE), 0)).toBe(TdxStatus.SUCCESS);
  }
}

/** The guest fills [gpa, gpa + size) privately, page by page, accepting on #VE. */
async function fillPrivate(cpu: GuestCpu, gpa: number, size: number, pattern: number): Promise<void> {
  for (let at = gpa; at < gpa + size; at += PAGE)
    expect((await privateAccess(cpu, at, new Uint8Array(PAGE).fill(pattern))).kind).toBe('ok');
}

/** The guest checks [gpa, gpa + size) privately, page by page, accepting on #VE. */
async function expectPrivate(cpu: GuestCpu, gpa: number, size: number, pattern: number): Promise<void> {
  for (let at = gpa; at < gpa + size; at += PAGE) {
    const result = await privateAccess(cpu, at, undefined);
    expect(result.kind === 'ok' && firstMismatch(result.data, pattern) === -1, `0x${at.toString(16)}`).toBe(
      true,
    );
  }
}

async function expectGeneral(cpu: GuestCpu, pattern: number): Promise<void> {
  await expectPrivate(cpu, AREA, GENERAL_0, pattern);
  await expectPrivate(cpu, GENERAL_1, GENERAL_1_SIZE, pattern);
}

function hostExpectGeneral(kvm: KvmVmm, pattern: number): void {
  hostExpect(kvm, AREA, GENERAL_0, pattern);
  hostExpect(kvm, GENERAL_1, GENERAL_1_SIZE, pattern);
}

describe('tdx_upm_test', () => {
  it('verify_upm_test_explicit: MapGPA both ways; shared memory is the host memory; private memory comes back zeroed', async () => {
    const { module, kvm, cpu } = await upmTd();
    await guestFill(cpu, AREA, AREA_SIZE, GUEST_GENERAL, 'private');
    // SYNC_CHECK_READ_PRIVATE_MEMORY_FROM_HOST: the host's view of private memory is its own memory.
    hostExpect(kvm, AREA, AREA_SIZE, CONFIDENCE_CHECK);
    await guestExpect(cpu, AREA, AREA_SIZE, GUEST_GENERAL, 'private');

    await toShared(cpu, FOCUS, FOCUS_SIZE);
    await expectGeneral(cpu, GUEST_GENERAL);
    // The host memory backs shared memory: the pattern the host wrote before the guest ran.
    await guestExpect(cpu, FOCUS, FOCUS_SIZE, CONFIDENCE_CHECK, 'shared');
    await guestFill(cpu, FOCUS, FOCUS_SIZE, GUEST_FOCUS, 'shared');
    // SYNC_CHECK_READ_SHARED_MEMORY_FROM_HOST
    hostExpect(kvm, FOCUS, FOCUS_SIZE, GUEST_FOCUS);
    hostExpectGeneral(kvm, CONFIDENCE_CHECK);
    hostFill(kvm, FOCUS, FOCUS_SIZE, HOST_FOCUS);
    await guestExpect(cpu, FOCUS, FOCUS_SIZE, HOST_FOCUS, 'shared');

    const back = await vmcallMapGpa(cpu, BigInt(FOCUS), BigInt(FOCUS_SIZE));
    expect(back.r10).toBe(TdvmcallStatus.SUCCESS);
    await expectGeneral(cpu, GUEST_GENERAL);
    // Zeroed after the round trip (each page accepted again on its #VE).
    await expectPrivate(cpu, FOCUS, FOCUS_SIZE, 0);
    // SYNC_CHECK_READ_PRIVATE_MEMORY_FROM_HOST_AGAIN: the host's memory kept what it held.
    hostExpectGeneral(kvm, CONFIDENCE_CHECK);
    hostExpect(kvm, FOCUS, FOCUS_SIZE, HOST_FOCUS);
    await fillPrivate(cpu, AREA, AREA_SIZE, GUEST_GENERAL);
    await expectPrivate(cpu, AREA, AREA_SIZE, GUEST_GENERAL);
    expect(kvm.counters.memoryFaultExits).toBe(0);
    expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
    assertInvariants(module);
  });

  it('verify_upm_test_implicit: the guest just uses the other alias; KVM_EXIT_MEMORY_FAULT, userspace converts, the access completes', async () => {
    const faults: { gpa: number; private: boolean }[] = [];
    const { module, kvm, cpu } = await upmTd({
      onMemoryFault: (fault) => {
        faults.push({ gpa: fault.gpa, private: fault.private });
        return 'convert';
      },
    });
    await guestFill(cpu, AREA, AREA_SIZE, GUEST_GENERAL, 'private');
    hostExpect(kvm, AREA, AREA_SIZE, CONFIDENCE_CHECK);
    await guestExpect(cpu, AREA, AREA_SIZE, GUEST_GENERAL, 'private');

    // Implicit conversion to shared: one memory-fault exit per page of the focus area, then the write lands in host
    // memory.
    await guestFill(cpu, FOCUS, FOCUS_SIZE, GUEST_FOCUS, 'shared');
    const pages = FOCUS_SIZE / PAGE;
    expect(faults).toEqual(
      Array.from({ length: pages }, (_, i) => ({ gpa: FOCUS + i * PAGE, private: false })),
    );
    expect(kvm.attributes.get(FOCUS)).toBe('shared');
    await expectGeneral(cpu, GUEST_GENERAL);
    hostExpect(kvm, FOCUS, FOCUS_SIZE, GUEST_FOCUS);
    hostExpectGeneral(kvm, CONFIDENCE_CHECK);
    hostFill(kvm, FOCUS, FOCUS_SIZE, HOST_FOCUS);
    await guestExpect(cpu, FOCUS, FOCUS_SIZE, HOST_FOCUS, 'shared');

    // Implicit conversion back to private: memory fault, AUG, #VE, accept, then the write.
    await fillPrivate(cpu, FOCUS, FOCUS_SIZE, GUEST_FOCUS);
    expect(faults.slice(pages)).toEqual(
      Array.from({ length: pages }, (_, i) => ({ gpa: FOCUS + i * PAGE, private: true })),
    );
    await expectGeneral(cpu, GUEST_GENERAL);
    hostExpectGeneral(kvm, CONFIDENCE_CHECK);
    hostExpect(kvm, FOCUS, FOCUS_SIZE, HOST_FOCUS);
    await fillPrivate(cpu, AREA, AREA_SIZE, GUEST_GENERAL);
    await expectPrivate(cpu, AREA, AREA_SIZE, GUEST_GENERAL);
    expect(kvm.counters.memoryFaultExits).toBe(2 * pages);
    expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
    assertInvariants(module);
  });
});

describe('userspace capabilities (merged KVM, arch/x86/kvm/vmx/tdx.c)', () => {
  it('without the KVM_HC_MAP_GPA_RANGE exit enabled, MapGPA answers SUBFUNC_UNSUPPORTED with R11 = the start (tdx_map_gpa)', async () => {
    const { kvm } = await upmVm({ mapGpaExit: false });
    const cpu = kvm.td.guest(0);
    const reply = await vmcallMapGpa(cpu, BigInt(S + 0x10_0000), BigInt(PAGE));
    expect(reply.r10).toBe(TdvmcallStatus.SUBFUNC_UNSUPPORTED);
    expect(reply.r11).toBe(BigInt(S + 0x10_0000));
    expect(kvm.attributes.get(0x10_0000)).not.toBe('shared');
    // Even a malformed call: the capability is checked first.
    expect((await vmcallMapGpa(cpu, 1n, 0n)).r10).toBe(TdvmcallStatus.SUBFUNC_UNSUPPORTED);
  });

  it('KVM_TDX_INIT_MEM_REGION after KVM_TDX_FINALIZE_VM is -EINVAL (tdx_vcpu_init_mem_region)', async () => {
    const { kvm } = await upmVm({});
    expect(await kvm.initMemRegion(0x10_0000, new Uint8Array(PAGE))).toEqual({
      kind: 'error',
      errno: 'EINVAL',
      next: 0x10_0000,
    });
  });
});
