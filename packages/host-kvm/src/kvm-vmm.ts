import {
  type BuildTdOptions,
  type BuiltTd,
  type Gprs,
  isStatus,
  makeGprs,
  type RangeMap,
  Reg,
  sharedBit,
  type TdCheckpoint,
  type TdExitEvent,
  type TdxModule,
  TdxStatus,
  VmExitReason,
  type Vmm,
  type VmmView,
} from '@tdxsim/tdx-module';
import { adoptCheckpoint, adoptTd, type KvmTdCheckpoint } from './adopt.js';
import {
  assertBytes,
  assertGpa,
  assertLength,
  assertPageGpa,
  assertPageSize,
  assertVcpu,
} from './arguments.js';
import { handleExternalInterrupt, handleNmiExit } from './async-exits.js';
import type { EnterExitCounters, FatalErrorReport } from './enter-exit-state.js';
import { KvmError } from './errors.js';
import { handleEptViolation } from './fault.js';
import { KvmRun } from './kvm-run.js';
import { punchHole, removeSlotMappings, setMemoryAttributes } from './memory.js';
import type { Memslot } from './memslots.js';
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
import { readUserspace, writeUserspace } from './userspace-memory.js';
import { type KvmCounters, VmState } from './vm-state.js';

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
    if (typeof module !== 'object' || module === null || typeof module.sharedEpt !== 'function')
      throw new KvmError('INVALID_ARGUMENT', 'module must be a TdxModule', 'module');
    const resolved = resolveKvmOptions(options);
    if (typeof build !== 'object' || build === null)
      throw new KvmError('INVALID_ARGUMENT', 'build must be an object (BuildTdOptions)', 'build');
    assertInitialImage(build.initialImage);
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

  /**
   * Takes over a TD that exists in `module` without building it — one restored from a checkpoint (`checkpointTd`), or
   * built by `buildTd` — with its tables (memslots, mirror S-EPT, shared EPT, attributes) as after its own build:
   * empty, one memslot over every GPA. KVM surveys the TD first through SEAMCALLs (see `surveyTd`) and throws a
   * `TD_NOT_ADOPTABLE` KvmError naming the argument at fault for a TD it cannot take over: the handle of another
   * module or package copy, a TDR or TDVPR that is not there, a `td.gpaw` that is not the TD's, private memory already
   * mapped or a shared EPT not empty (pages its tables would not know). The TD is runnable if it is finalized; else
   * call {@link finalize}. The build's SEAMCALLs are not in {@link counters}. Call {@link run} to start it.
   */
  static adopt(module: TdxModule, td: BuiltTd, options: KvmVmmOptions = {}): Promise<KvmVmm> {
    return adoptTd(module, td, options, (vm) => new KvmVmm(vm));
  }

  /**
   * {@link adopt} for every restore of a checkpoint: surveys it once (on a restore of its own), then each
   * `restore(services, options)` gives a new module, the TD and a KVM backend that took it over, with no SEAMCALL —
   * what a fuzz case or an explored schedule needs instead of a build. Throws as {@link adopt} does.
   */
  static adoptCheckpoint(checkpoint: TdCheckpoint, options: KvmVmmOptions = {}): Promise<KvmTdCheckpoint> {
    return adoptCheckpoint(checkpoint, options, (vm) => new KvmVmm(vm));
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
    assertVcpu('index', index, this.td.tdvprs.length);
    if (typeof vector !== 'number' || !Number.isSafeInteger(vector) || vector < 16 || vector > 255)
      throw new KvmError(
        'INVALID_ARGUMENT',
        `vector must be an integer in [16, 255], got ${String(vector)}`,
        'vector',
      );
    deliverInterrupt(this.#vm, this.#run, index, vector);
  }

  /** Makes vCPU `index` have an event pending: its current MapGPA ends with RETRY, its private fault loop ends. */
  injectEvent(index: number): void {
    assertVcpu('index', index, this.td.tdvprs.length);
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
    const limit = this.#gpaLimit;
    assertPageGpa('start', start, limit);
    assertPageSize('size', size, start, limit);
    if (to !== 'private' && to !== 'shared')
      throw new KvmError('INVALID_ARGUMENT', `to must be 'private' or 'shared', got ${String(to)}`, 'to');
    if (this.#vm.dead !== undefined) throw this.#vm.deadError();
    await setMemoryAttributes(this.#vm, this.#run, start, start + size, to);
  }

  /**
   * fallocate(FALLOC_FL_PUNCH_HOLE) on the guest_memfd behind [start, start + size): KVM zaps the private leaves
   * there under mmu_lock (BLOCK → TRACK → kick → REMOVE) and the pages go back to the host; the attributes stay. The
   * guest's next private access faults in a new PENDING page that it must accept again (it reads zeros). Rejects
   * with a KvmError `VM_DEAD` if a zap step failed.
   */
  async punchHole(start: number, size: number): Promise<void> {
    const limit = this.#gpaLimit;
    assertPageGpa('start', start, limit);
    assertPageSize('size', size, start, limit);
    if (this.#vm.dead !== undefined) throw this.#vm.deadError();
    await punchHole(this.#vm, this.#run, start, start + size);
  }

  /** The memslots (KVM_SET_USER_MEMORY_REGION2), in slot order: by default one, slot 0, over every GPA. */
  get memslots(): readonly Memslot[] {
    return this.#vm.memslots.list();
  }

  /**
   * Deletes memslot `slot` (KVM_SET_USER_MEMORY_REGION2 with size 0), under slots_lock: KVM zaps the slot's range on
   * both sides under mmu_lock — private leaves removed and their pages back to the host, shared-EPT mappings dropped
   * (the userspace memory and its contents stay the VMM's). Until a slot holds them again, the guest's accesses to
   * those GPAs wait in KVM. Rejects with a KvmError `VM_DEAD` if a zap step failed.
   */
  removeMemslot(slot: number): Promise<void> {
    const found = typeof slot === 'number' ? this.#vm.memslots.get(slot) : undefined;
    if (found === undefined) throw new KvmError('INVALID_ARGUMENT', `no memslot ${String(slot)}`, 'slot');
    if (this.#vm.dead !== undefined) throw this.#vm.deadError();
    const vm = this.#vm;
    return this.#slots.run(() =>
      removeSlotMappings(vm, this.#run, found.gpa, found.gpa + found.size, () => vm.memslots.remove(slot)),
    );
  }

  /**
   * Adds memslot `slot` over [gpa, gpa + size) (KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_GUEST_MEMFD), under
   * slots_lock; the userspace memory behind it is the VMM's memory at those GPAs (what it held before, if anything).
   * A new slot maps nothing: the guest's accesses fault its pages in. Throws a KvmError for a slot id in use or a range
   * overlapping another slot.
   */
  addMemslot(slot: number, gpa: number, size: number): Promise<void> {
    if (typeof slot !== 'number' || !Number.isSafeInteger(slot) || slot < 0 || slot > 0x7fff)
      throw new KvmError(
        'INVALID_ARGUMENT',
        `slot must be an integer in [0, 32767], got ${String(slot)}`,
        'slot',
      );
    const limit = this.#gpaLimit;
    assertPageGpa('gpa', gpa, limit);
    assertPageSize('size', size, gpa, limit);
    const vm = this.#vm;
    if (vm.memslots.get(slot) !== undefined)
      throw new KvmError('INVALID_ARGUMENT', `memslot ${slot} exists`, 'slot');
    const other = vm.memslots.overlapping(gpa, size);
    if (other !== undefined)
      throw new KvmError('INVALID_ARGUMENT', `the range overlaps memslot ${other.slot}`, 'gpa');
    if (vm.dead !== undefined) throw vm.deadError();
    return this.#slots.run(async () => {
      vm.memslots.add({ slot, gpa, size });
    });
  }

  /**
   * The VMM process reading `length` bytes (at most 1 GiB) of its own memory at `gpa` (the memslots' userspace
   * memory; shared bit removed), whatever
   * the attribute: a shared page as the guest sees it, a private one as it was when last shared. Never-touched pages
   * read as zeros. Private memory is guest_memfd's and never readable here.
   */
  readMemory(gpa: number, length: number): Uint8Array {
    const limit = this.#gpaLimit;
    assertGpa('gpa', gpa, limit);
    assertLength('length', length, Math.min(limit - gpa, 2 ** 30));
    return readUserspace(this.#vm, gpa, length);
  }

  /**
   * The VMM process writing its own memory at `gpa` (shared bit removed), at any time — before the guest runs, or
   * while the page is private (the guest sees the bytes once the page is shared again).
   */
  writeMemory(gpa: number, bytes: Uint8Array): void {
    const limit = this.#gpaLimit;
    assertGpa('gpa', gpa, limit);
    assertBytes('bytes', bytes);
    if (gpa + bytes.length > limit)
      throw new KvmError('INVALID_ARGUMENT', 'bytes reach past the shared bit', 'bytes');
    writeUserspace(this.#vm, gpa, bytes);
  }

  /** The first GPA past private memory: the shared bit. */
  get #gpaLimit(): number {
    return sharedBit(this.td.gpaw);
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
   * dead, or userspace stopped it): at once when the exit was handled without waiting (an EPT violation whose
   * SEAMCALLs answered at once), else a promise. A failure of the handler is a rejected promise, never a throw.
   */
  onTdExit(exit: TdExitEvent): Gprs | undefined | Promise<Gprs | undefined> {
    // The exit of every page faulted in takes a path with no async frame of its own; anything else, or anything
    // the checks below would refuse, the general one.
    if (this.#vm.dead === undefined && isPlainEptViolation(exit, this.td.tdvprs.length))
      return this.#eptViolation(exit);
    return this.#onTdExit(exit);
  }

  /** An EPT-violation exit (checked): the fault handled, then the registers of the next entry (none if the VM died). */
  #eptViolation(exit: TdExitEvent): Gprs | undefined | Promise<Gprs | undefined> {
    const vm = this.#vm;
    vm.counters.exits++;
    let fault: Promise<void> | undefined;
    try {
      fault = handleEptViolation(vm, this.#run, exit.vcpuIndex, exit.regs);
    } catch (error) {
      return Promise.reject(error).catch(stopIfVmDead);
    }
    if (fault === undefined) return this.#reentry(exit.vcpuIndex);
    return this.#reentryAfter(fault, exit.vcpuIndex);
  }

  /**
   * {@link #reentry} once a fault that had to wait is handled. A method of its own: a closure in {@link #eptViolation}
   * would make V8 allocate a context on every exit, the ones handled at once included.
   */
  #reentryAfter(fault: Promise<void>, index: number): Promise<Gprs | undefined> {
    return fault.then(() => this.#reentry(index), stopIfVmDead);
  }

  /**
   * After an exit handled: the register file to enter vCPU `index` again with (empty but RCX = its TDVPR, which the
   * vCPU loop would set in a copy otherwise), or undefined once the VM is dead.
   */
  #reentry(index: number): Gprs | undefined {
    if (this.#vm.dead !== undefined) return undefined;
    return this.#vm.reentryRegisters(index);
  }

  async #onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    if (typeof exit !== 'object' || exit === null || !Array.isArray(exit.regs) || exit.regs.length < 16)
      throw new KvmError('INVALID_ARGUMENT', 'exit must be a TdExitEvent with 16 registers', 'exit');
    assertVcpu('exit.vcpuIndex', exit.vcpuIndex, this.td.tdvprs.length);
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
        case VmExitReason.EPT_VIOLATION: {
          const fault = handleEptViolation(vm, this.#run, exit.vcpuIndex, exit.regs);
          if (fault !== undefined) await fault;
          break;
        }
        case VmExitReason.TDCALL:
          return await handleTdvmcall(vm, this.#run, exit);
        default:
          // The rest: nothing to do but enter again.
          break;
      }
    } catch (error) {
      return stopIfVmDead(error);
    }
    return this.#reentry(exit.vcpuIndex);
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
      await vm.backOff('kvm.vcpu-run', 'enter busy', undefined);
      return makeGprs();
    }
    if (isStatus(rax, TdxStatus.HOST_PRIORITY_BUSY_TIMEOUT) && vm.options.hostPriorityTimeout === 'reenter')
      return makeGprs();
    vm.kill(`KVM_EXIT_INTERNAL_ERROR on TD exit status 0x${rax.toString(16)}: userspace stopped the VM`);
    return undefined;
  }
}

/** RAX of an EPT-violation exit: the exit reason, nothing else set. */
const EPT_VIOLATION_RAX = BigInt(VmExitReason.EPT_VIOLATION);

/** Whether `exit` is an EPT-violation exit that {@link KvmVmm.onTdExit}'s checks let through (of `vcpus` vCPUs). */
function isPlainEptViolation(exit: TdExitEvent, vcpus: number): boolean {
  if (typeof exit !== 'object' || exit === null) return false;
  const { regs, vcpuIndex } = exit;
  return (
    Array.isArray(regs) &&
    regs.length >= 16 &&
    regs[Reg.RAX] === EPT_VIOLATION_RAX &&
    Number.isSafeInteger(vcpuIndex) &&
    vcpuIndex >= 0 &&
    vcpuIndex < vcpus
  );
}

/** A handler failed: a dead VM (KvmError VM_DEAD) stops the vCPU (undefined); anything else is thrown on. */
function stopIfVmDead(error: unknown): undefined {
  if (KvmError.is(error) && error.code === 'VM_DEAD') return undefined;
  throw error;
}

/**
 * The initial image of `KvmVmm.create` (the module's builder, which checks it, never sees it: KVM adds it itself):
 * an array of pages, each a GPA (checked by KVM_TDX_INIT_MEM_REGION) and at most 4096 bytes in a Uint8Array, one
 * region of one page each.
 */
function assertInitialImage(image: unknown): void {
  if (image === undefined) return;
  if (!Array.isArray(image))
    throw new KvmError(
      'INVALID_ARGUMENT',
      'build.initialImage must be an array of pages',
      'build.initialImage',
    );
  image.forEach((page: unknown, i) => {
    const where = `build.initialImage[${i}]`;
    if (typeof page !== 'object' || page === null)
      throw new KvmError('INVALID_ARGUMENT', `${where} must be an object { gpa, bytes }`, where);
    const { bytes } = page as { bytes?: unknown };
    if (!(bytes instanceof Uint8Array))
      throw new KvmError('INVALID_ARGUMENT', `${where}.bytes must be a Uint8Array`, `${where}.bytes`);
    // One entry is one page: more bytes were cut at 4 KiB without a word.
    if (bytes.length > 4096)
      throw new KvmError(
        'INVALID_ARGUMENT',
        `${where}.bytes must hold one page, at most 4096 bytes, got ${bytes.length} (give each page an entry)`,
        `${where}.bytes`,
      );
  });
}
