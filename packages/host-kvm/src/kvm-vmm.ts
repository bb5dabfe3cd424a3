import {
  type BuildTdOptions,
  type BuiltTd,
  type Gprs,
  isStatus,
  makeGprs,
  type RangeMap,
  Reg,
  type TdExitEvent,
  type TdxModule,
  TdxStatus,
  VmExitReason,
  type Vmm,
  type VmmView,
} from '@tdxsim/tdx-module';
import { handleExternalInterrupt, handleNmiExit } from './async-exits.js';
import type { EnterExitCounters, FatalErrorReport } from './enter-exit-state.js';
import { KvmError } from './errors.js';
import { handleEptViolation } from './fault.js';
import { KvmRun } from './kvm-run.js';
import { setMemoryAttributes } from './memory.js';
import type { MirrorSept } from './mirror-sept.js';
import type { MmuLock } from './mmu-lock.js';
import { type KvmVmmOptions, type ResolvedKvmOptions, resolveKvmOptions } from './options.js';
import { deliverInterrupt } from './posted-interrupts.js';
import {
  buildTdForKvm,
  finalize,
  type InitMemRegionOptions,
  type InitMemRegionResult,
  initMemRegion,
  SlotsLock,
} from './td-build.js';
import { handleTdvmcall } from './tdvmcall.js';
import { type KvmCounters, nextTurn, VmState } from './vm-state.js';

const PAGE = 4096;

/**
 * A KVM-like VMM (merged KVM TDX, Linux 6.16): it manages its TD through SEAMCALLs and TD exits only, and keeps its
 * own tables — the mirror S-EPT, the shared EPT mappings it made, the memory attributes — under its mmu_lock. This
 * class wires the concerns: building (td-build), KVM_RUN (kvm-run), the exits (fault, tdvmcall, map-gpa), zaps (zap,
 * memory). Source: Linux arch/x86/kvm/vmx/tdx.c (reference guest-and-vmm.md §3).
 */
export class KvmVmm implements Vmm {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly options: ResolvedKvmOptions;
  readonly #vm: VmState;
  readonly #run: KvmRun;
  readonly #slots = new SlotsLock();

  private constructor(vm: VmState) {
    this.#vm = vm;
    this.#run = new KvmRun(vm);
    this.module = vm.module;
    this.td = vm.td;
    this.options = vm.options;
  }

  /**
   * Builds a TD the way KVM does (through SEAMCALLs) and returns the backend that will run it: the initial image of
   * `build` goes in with KVM_TDX_INIT_MEM_REGION (measured), then KVM_TDX_FINALIZE_VM unless `build.skipFinalize`.
   * Throws a KvmError for a bad option before any SEAMCALL.
   */
  static async create(
    module: TdxModule,
    options: KvmVmmOptions = {},
    build: BuildTdOptions = {},
  ): Promise<KvmVmm> {
    const resolved = resolveKvmOptions(options);
    const td = await buildTdForKvm(module, build);
    const kvm = new KvmVmm(new VmState(module, td, resolved));
    for (const { gpa, bytes } of build.initialImage ?? []) {
      const result = await kvm.initMemRegion(gpa, bytes.subarray(0, PAGE), { measure: true });
      if (result.kind !== 'ok')
        throw new KvmError(
          'INVALID_ARGUMENT',
          `initial image at 0x${gpa.toString(16)}: -${result.errno}`,
          'build',
        );
    }
    if (build.skipFinalize !== true) {
      const finalized = await kvm.finalize();
      if (finalized !== 'ok') throw new KvmError('INVALID_ARGUMENT', `finalize: -${finalized}`, 'build');
    }
    return kvm;
  }

  /** What the backend counted. */
  get counters(): KvmCounters {
    return this.#vm.counters;
  }

  /** Memory attributes as userspace set them: private unless made shared. Read it; change it with {@link setMemoryAttributes}. */
  get attributes(): RangeMap<'private' | 'shared'> {
    return this.#vm.attributes;
  }

  /** KVM's mirror of the S-EPT (read it; only the backend's SEAMCALL results change it). */
  get mirror(): MirrorSept {
    return this.#vm.mirror;
  }

  /** KVM's mmu_lock (for tests that look at who holds it). */
  get mmuLock(): MmuLock {
    return this.#vm.mmuLock;
  }

  /** Why the VM is dead (KVM_BUG_ON), or undefined while it lives. */
  get dead(): string | undefined {
    return this.#vm.dead;
  }

  /** Starts a host thread per vCPU (KVM_RUN loops). */
  run(): Promise<void>[] {
    return this.#run.start(this);
  }

  /** What the backend counted on the enter/exit path (NMI, interrupt and HLT exits, TDVMCALLs, userspace exits). */
  get enterExitCounters(): EnterExitCounters {
    return this.#vm.enterExit.counters;
  }

  /** The fatal error the TD reported with TDG.VP.VMCALL<ReportFatalError>, as userspace decoded it; the VM stopped. */
  get fatalError(): FatalErrorReport | undefined {
    return this.#vm.enterExit.fatalError;
  }

  /** The event-notify interrupt the guest set up (SetupEventNotifyInterrupt): its vector and the vCPU it goes to. */
  get eventNotify(): { readonly vector: number; readonly vcpu: number } | undefined {
    return this.#vm.enterExit.eventNotify;
  }

  /**
   * An interrupt for vCPU `index` (what userspace's irqchip or a device raises): posted, as KVM delivers every
   * interrupt to a TD — into the TD's virtual APIC at once if the vCPU is in guest mode, else at its next entry; a
   * halted vCPU wakes up; a MapGPA in progress ends with RETRY.
   */
  deliverInterrupt(index: number, vector: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.td.tdvprs.length)
      throw new KvmError('INVALID_ARGUMENT', `no vCPU ${String(index)}`, 'index');
    if (!Number.isSafeInteger(vector) || vector < 16 || vector > 255)
      throw new KvmError(
        'INVALID_ARGUMENT',
        `vector must be an integer in [16, 255], got ${String(vector)}`,
        'vector',
      );
    deliverInterrupt(this.#vm, this.#run, index, vector);
  }

  /** Makes vCPU `index` have an event pending: its current MapGPA ends with RETRY, its private fault loop ends. */
  injectEvent(index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.td.tdvprs.length)
      throw new KvmError('INVALID_ARGUMENT', `no vCPU ${String(index)}`, 'index');
    this.#vm.pendingEvents.add(index);
  }

  /** KVM_TDX_INIT_MEM_REGION (see {@link initMemRegion} in td-build): only before {@link finalize}. */
  initMemRegion(
    gpa: number,
    data: Uint8Array,
    options: InitMemRegionOptions = {},
  ): Promise<InitMemRegionResult> {
    return this.#slots.run(() => initMemRegion(this.#vm, gpa, data, options));
  }

  /** KVM_TDX_FINALIZE_VM: 'ok', or the errno KVM answers. */
  finalize(): Promise<'ok' | 'EINVAL' | 'EBUSY' | 'EIO'> {
    return this.#slots.run(() => finalize(this.#vm));
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES from userspace: [start, start + size) becomes private or shared, and KVM zaps the old
   * side under mmu_lock. Rejects with a KvmError `VM_DEAD` if a zap step failed (the VM is then dead).
   */
  async setMemoryAttributes(start: number, size: number, to: 'private' | 'shared'): Promise<void> {
    if (!Number.isSafeInteger(start) || start < 0 || start % PAGE !== 0)
      throw new KvmError('INVALID_ARGUMENT', `start must be 4K-aligned, got ${String(start)}`, 'start');
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0)
      throw new KvmError(
        'INVALID_ARGUMENT',
        `size must be a positive 4K multiple, got ${String(size)}`,
        'size',
      );
    if (to !== 'private' && to !== 'shared')
      throw new KvmError('INVALID_ARGUMENT', `to must be 'private' or 'shared', got ${String(to)}`, 'to');
    if (this.#vm.dead !== undefined) throw this.#vm.deadError();
    await setMemoryAttributes(this.#vm, this.#run, start, start + size, to);
  }

  /**
   * The backend's view for checkers (`checkVmmView`): the private leaves of its mirror (present or blocked) and the
   * shared-EPT mappings it made. At quiescence it must equal the module's S-EPT and shared EPT.
   */
  view(): VmmView {
    const vm = this.#vm;
    return {
      privateMappings: () => vm.mirror.privateMappings(),
      sharedMappings: () => [...vm.shared].map(([gpa, hpa]) => ({ gpa, level: 0, hpa }) as const),
    };
  }

  /**
   * A TD exit of one of its vCPUs. Answers the registers of the next entry, or undefined to stop the vCPU (the VM is
   * dead, or userspace stopped it).
   */
  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    const vm = this.#vm;
    vm.counters.exits++;
    if (vm.dead !== undefined) return undefined;
    const rax = exit.regs[Reg.RAX] as bigint;
    if (rax >> 63n === 1n) return this.#failedEntryOrErrorExit(rax);
    try {
      switch (Number(rax & 0xffffn)) {
        case VmExitReason.EXCEPTION_NMI:
          handleNmiExit(vm, exit);
          break;
        case VmExitReason.EXTERNAL_INTERRUPT:
          handleExternalInterrupt(vm);
          break;
        case VmExitReason.EPT_VIOLATION:
          await handleEptViolation(vm, this.#run, exit.vcpuIndex, exit.regs);
          break;
        case VmExitReason.TDCALL:
          return await handleTdvmcall(vm, this.#run, exit);
        default:
          // The rest: nothing to do but enter again.
          break;
      }
    } catch (error) {
      if (KvmError.is(error) && error.code === 'VM_DEAD') return undefined;
      throw error;
    }
    return vm.dead === undefined ? makeGprs() : undefined;
  }

  /**
   * An error status instead of an exit reason. TDH.VP.ENTER BUSY (KVM_RUN enters again by itself; this answers the
   * same when a caller hands it here); HOST_PRIORITY_BUSY_TIMEOUT: KVM's exit handler does not know it and hands it
   * to userspace as an internal error (tdx_handle_exit), which runs the vCPU again or stops the VM; anything else
   * the same way, and userspace stops.
   */
  async #failedEntryOrErrorExit(rax: bigint): Promise<Gprs | undefined> {
    const vm = this.#vm;
    if (isStatus(rax, TdxStatus.OPERAND_BUSY)) {
      await nextTurn();
      return makeGprs();
    }
    if (isStatus(rax, TdxStatus.HOST_PRIORITY_BUSY_TIMEOUT) && vm.options.hostPriorityTimeout === 'reenter')
      return makeGprs();
    vm.kill(`KVM_EXIT_INTERNAL_ERROR on TD exit status 0x${rax.toString(16)}: userspace stopped the VM`);
    return undefined;
  }
}
