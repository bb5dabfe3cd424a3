import {
  type BuildTdOptions,
  type BuiltTd,
  buildTd,
  isStatus,
  sharedBit,
  type TdxModule,
  TdxStatus,
} from '@tdxsim/tdx-module';
import { KvmError } from './errors.js';
import { mapPrivate } from './fault.js';
import { MirrorEntry } from './mirror-sept.js';
import type { VmState } from './vm-state.js';

const PAGE = 4096;
/** TDX_EXTENDMR_CHUNKSIZE: TDH.MR.EXTEND measures 256 bytes per call. */
const EXTEND_CHUNK = 256;

/** What KVM_TDX_INIT_MEM_REGION answered: done, or the errno with the GPA the region was advanced to. */
export type InitMemRegionResult =
  | { readonly kind: 'ok' }
  | { readonly kind: 'error'; readonly errno: 'EINVAL' | 'EBUSY' | 'EIO'; readonly next: number };

/** Options of one KVM_TDX_INIT_MEM_REGION call. */
export interface InitMemRegionOptions {
  /** KVM_TDX_MEASURE_MEMORY_REGION: extend the TD's measurement with each page (TDH.MR.EXTEND). Default false. */
  readonly measure?: boolean;
}

/**
 * The TD as KVM builds it, through SEAMCALLs: TDH.MNG.CREATE to TDH.VP.INIT for every vCPU (KVM_TDX_INIT_VM and
 * KVM_TDX_INIT_VCPU). The initial image and the finalization are KVM's own steps (KVM_TDX_INIT_MEM_REGION, which maps
 * the pages through the mirror, and KVM_TDX_FINALIZE_VM), so `initialImage` and `skipFinalize` are handled by the
 * caller, not by the module's builder.
 */
export async function buildTdForKvm(module: TdxModule, build: BuildTdOptions): Promise<BuiltTd> {
  const { initialImage: _image, skipFinalize: _skip, ...rest } = build;
  return buildTd(module, { ...rest, skipFinalize: true });
}

/** KVM's slots_lock, for the TD-build ioctls that take it: one at a time. */
export class SlotsLock {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `body` once every earlier holder is done. */
  run<T>(body: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(body);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

/**
 * KVM_TDX_INIT_MEM_REGION: copies `data` into the TD at private `gpa`, page by page (the last page padded with
 * zeros), under slots_lock. Each page is first mapped through the mirror like a fault — missing S-EPT tables are
 * linked with TDH.MEM.SEPT.ADD, whose contention is retried in the kernel until it succeeds or the VM is dead — and
 * recorded as premapped; then TDH.MEM.PAGE.ADD copies it in. PAGE.ADD contention answers -EBUSY with the region
 * advanced to the page that failed, so userspace can resume (or, with `pageAddBusy: 'retry'`, is retried as Linux
 * 6.19 does); other errors -EIO. With `measure`, TDH.MR.EXTEND per 256 bytes. -EINVAL for a region KVM refuses: after
 * finalization, not page-aligned, empty, wrapping, or not private.
 * Source: arch/x86/kvm/vmx/tdx.c (tdx_vcpu_init_mem_region, tdx_gmem_post_populate) and arch/x86/kvm/mmu/mmu.c
 * (kvm_tdp_map_page: retried while the fault says retry, -EIO once the VM is dead).
 */
export async function initMemRegion(
  vm: VmState,
  gpa: number,
  data: Uint8Array,
  options: InitMemRegionOptions = {},
): Promise<InitMemRegionResult> {
  if (!Number.isSafeInteger(gpa) || gpa < 0)
    throw new KvmError('INVALID_ARGUMENT', `gpa must be a non-negative integer, got ${String(gpa)}`, 'gpa');
  if (!(data instanceof Uint8Array))
    throw new KvmError('INVALID_ARGUMENT', 'data must be a Uint8Array', 'data');
  if (typeof options !== 'object' || options === null || Object.keys(options).some((k) => k !== 'measure'))
    throw new KvmError('INVALID_ARGUMENT', 'options may only have "measure"', 'options');
  if (options.measure !== undefined && typeof options.measure !== 'boolean')
    throw new KvmError('INVALID_ARGUMENT', 'options.measure must be a boolean', 'options.measure');
  const end = gpa + Math.ceil(data.length / PAGE) * PAGE;
  const invalid = { kind: 'error', errno: 'EINVAL', next: gpa } as const;
  if (vm.dead !== undefined) return { kind: 'error', errno: 'EIO', next: gpa };
  if (vm.runnable || gpa % PAGE !== 0 || data.length === 0 || end > sharedBit(vm.td.gpaw)) return invalid;
  const { td } = vm;
  for (let offset = 0; offset < data.length; offset += PAGE) {
    const at = gpa + offset;
    for (let attempt = 0; ; attempt++) {
      if (vm.dead !== undefined) return { kind: 'error', errno: 'EIO', next: at };
      const mapped = await mapPrivate(vm, at, 0, attempt === 0);
      if (mapped === 'fixed') break;
      if (mapped === 'memory-fault' || mapped === 'no-slot')
        return { kind: 'error', errno: 'EINVAL', next: at };
      if (mapped === 'dead') return { kind: 'error', errno: 'EIO', next: at };
      await vm.backOff('kvm.init-mem-region', 'map retry', at);
    }
    const target = vm.mirror.hpaOf(0, at) as number;
    const source = td.allocator.alloc4k();
    const bytes = new Uint8Array(PAGE);
    bytes.set(data.subarray(offset, offset + PAGE));
    vm.module.hostWrite(source, bytes);
    let added: Awaited<ReturnType<typeof td.host.pageAdd>>;
    try {
      for (;;) {
        added = await vm.seamcall('TDH.MEM.PAGE.ADD', () => td.host.pageAdd(td.tdr, at, target, source));
        if (!isStatus(added.status, TdxStatus.OPERAND_BUSY) || vm.options.pageAddBusy === 'ebusy') break;
        await vm.backOff('kvm.init-mem-region', 'page-add retry', at);
      }
    } catch {
      return { kind: 'error', errno: 'EIO', next: at };
    } finally {
      td.allocator.free4k(source);
    }
    if (added.status !== TdxStatus.SUCCESS) {
      const busy = isStatus(added.status, TdxStatus.OPERAND_BUSY);
      return { kind: 'error', errno: busy ? 'EBUSY' : 'EIO', next: at };
    }
    if (vm.mirror.get(0, at) === MirrorEntry.PREMAPPED) vm.premapped--;
    vm.mirror.set(0, at, MirrorEntry.PRESENT, target);
    if (options.measure !== true) continue;
    for (let chunk = 0; chunk < PAGE; chunk += EXTEND_CHUNK) {
      const extended = await vm.seamcall('TDH.MR.EXTEND', () => td.host.mrExtend(td.tdr, at + chunk));
      if (extended.status !== TdxStatus.SUCCESS) return { kind: 'error', errno: 'EIO', next: at };
    }
  }
  return { kind: 'ok' };
}

/**
 * KVM_TDX_FINALIZE_VM, under slots_lock: -EINVAL once finalized or while premapped pages wait for their PAGE.ADD;
 * TDH.MR.FINALIZE contention → -EBUSY; another error is a KVM bug (the VM is dead) → -EIO.
 * Source: arch/x86/kvm/vmx/tdx.c (tdx_td_finalize).
 */
export async function finalize(vm: VmState): Promise<'ok' | 'EINVAL' | 'EBUSY' | 'EIO'> {
  if (vm.dead !== undefined) return 'EIO';
  if (vm.runnable || vm.premapped > 0) return 'EINVAL';
  const { td } = vm;
  const result = await vm.seamcall('TDH.MR.FINALIZE', () => td.host.mrFinalize(td.tdr));
  if (isStatus(result.status, TdxStatus.OPERAND_BUSY)) return 'EBUSY';
  if (result.status !== TdxStatus.SUCCESS) {
    vm.kill('TDH.MR.FINALIZE failed');
    return 'EIO';
  }
  vm.finalized();
  return 'ok';
}
