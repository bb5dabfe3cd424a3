import {
  encodeLeaf,
  type Gprs,
  isStatus,
  makeGprs,
  Reg,
  SeamcallLeaf,
  TdxStatus,
  type Vmm,
  withTdvpr,
} from '@tdxsim/tdx-module';
import { syncPostedInterrupts } from './posted-interrupts.js';
import type { VmState } from './vm-state.js';

const VP_ENTER = encodeLeaf(SeamcallLeaf.VP_ENTER);
/** Bit 63 of RAX after TDH.VP.ENTER: an error status, not an exit. */
const ERROR_BIT = 1n << 63n;
/** Macrotask turns a vCPU waits after a TDH.VP.ENTER that answered BUSY. */
const BACK_OFF_TURNS = 3;

/**
 * The pause before entering again after a BUSY entry (KVM leaves its fast path: interrupts, requests, rescheduling).
 * Each entry attempt passes the module's yield point before TDH.VP.ENTER; backing off lets an explorer resume the
 * contending host flow first (a priority scheduler would otherwise pick the spinning thread again and again).
 */
function backOff(vm: VmState, index: number): Promise<void> {
  return vm.backOff('kvm.vcpu-run', `enter busy vcpu${index}`, undefined, BACK_OFF_TURNS);
}
/** A vCPU's host thread is in KVM, outside guest mode. */
const OUTSIDE = 0;
/** Its host thread has decided to enter (vcpu->mode = IN_GUEST_MODE) and is in TDH.VP.ENTER. */
const IN_GUEST = 1;

/**
 * KVM_RUN for each vCPU and what KVM knows of its vCPUs' modes: the TDH.VP.ENTER loop, the "no vCPU may enter" flag
 * that a zap sets while it retries a SEAMCALL, and kicking every vCPU out of guest mode with an acknowledgement.
 *
 * KVM's request protocol is modelled here, not in the TDX module: a vCPU that decided to enter before the flag was
 * set is in guest mode or about to be; a kick waits for its next exit from guest mode (kicking again until it has
 * really entered), so that after the kick no vCPU can be in guest mode without having seen the flag.
 * Source: arch/x86/kvm/vmx/tdx.c (tdx_vcpu_run: no entry while wait_for_sept_zap; tdx_no_vcpus_enter_start and
 * tdx_track: kvm_make_all_cpus_request with KVM_REQ_OUTSIDE_GUEST_MODE, which waits for the acknowledgement;
 * tdx_exit_handlers_fastpath: a TDH.VP.ENTER that answered OPERAND_BUSY is entered again).
 */
export class KvmRun {
  readonly #vm: VmState;
  /** Per vCPU: OUTSIDE or IN_GUEST (KVM's vcpu->mode). */
  readonly #mode: Uint8Array;
  /** Per vCPU: TDH.VP.ENTERs that returned, i.e. exits from guest mode (or failed entries). */
  readonly #returns: Float64Array;
  #noEnter: { readonly open: Promise<void>; readonly release: () => void } | undefined;

  constructor(vm: VmState) {
    this.#vm = vm;
    const count = vm.td.tdvprs.length;
    this.#mode = new Uint8Array(count);
    this.#returns = new Float64Array(count);
  }

  /** Starts a host thread per vCPU running KVM_RUN until the backend stops the vCPU or the VM dies. */
  start(vmm: Vmm): Promise<void>[] {
    const vm = this.#vm;
    const { module, td } = vm;
    return td.tdvprs.map((tdvpr, index) => {
      const tdvprRegister = vm.tdvprRegister(index);
      const first = makeGprs();
      first[Reg.RCX] = tdvprRegister;
      return module.runAs(`vcpu${index}:host`, () => this.#loop(vm, vmm, tdvpr, index, tdvprRegister, first));
    });
  }

  /** Whether vCPU `index` is in guest mode (or entering it): KVM's vcpu->mode == IN_GUEST_MODE. */
  inGuest(index: number): boolean {
    return this.#mode[index] === IN_GUEST;
  }

  /** Whether a zap keeps every vCPU out now. */
  get noEnter(): boolean {
    return this.#noEnter !== undefined;
  }

  /** tdx_no_vcpus_enter_start: no vCPU enters until {@link endNoEnter}; then every vCPU is kicked out. */
  async startNoEnter(): Promise<void> {
    if (this.#noEnter === undefined) {
      let release: () => void = () => undefined;
      const open = new Promise<void>((resolve) => {
        release = resolve;
      });
      this.#noEnter = { open, release };
    }
    await this.kickAll();
  }

  /** tdx_no_vcpus_enter_stop. */
  endNoEnter(): void {
    const gate = this.#noEnter;
    this.#noEnter = undefined;
    gate?.release();
  }

  /**
   * KVM_REQ_OUTSIDE_GUEST_MODE to every vCPU, waiting for the acknowledgement: each vCPU in guest mode (or entering
   * it) when the request is made leaves guest mode once before this resolves.
   */
  async kickAll(): Promise<void> {
    const { module, td } = this.#vm;
    const waits: Promise<void>[] = [];
    for (let index = 0; index < this.#mode.length; index++) {
      if (this.#mode[index] !== IN_GUEST) continue;
      const seen = this.#returns[index] as number;
      const tdvpr = td.tdvprs[index] as number;
      // The yield point's step, made once: an explorer may keep this thread spinning here for millions of rounds.
      const step = `vcpu${index}`;
      waits.push(
        (async () => {
          // Kick until that entry has returned: a kick before the vCPU is really in guest mode finds nothing to stop.
          while (this.#returns[index] === seen) {
            await module.kickVcpu(tdvpr);
            if (this.#returns[index] === seen) await this.#vm.backOff('kvm.kick', step, undefined);
          }
        })(),
      );
    }
    if (waits.length > 0) await Promise.all(waits);
  }

  /*
   * A vCPU's loop runs once per VM, so V8 optimises it while it loops, having seen what runs before the loop only
   * before it collected type feedback: at the next VM in the process, code optimised that way is thrown away (and
   * the loop, with all it inlines, compiled again) at the first operation without feedback. So what comes before the
   * loop is made by the caller (`first`: the registers of the first entry, RCX = `tdvprRegister`), and the wait for
   * finalization is the loop's first step (after it, `runnable` stays true: a check per entry that awaits nothing).
   */
  async #loop(
    vm: VmState,
    vmm: Vmm,
    tdvpr: number,
    index: number,
    tdvprRegister: bigint,
    first: Gprs,
  ): Promise<void> {
    let next = first;
    try {
      for (;;) {
        // KVM_RUN before KVM_TDX_FINALIZE_VM is refused (tdx_vcpu_pre_run): this thread waits for it instead.
        if (!vm.runnable) await vm.whenRunnable();
        if (vm.dead !== undefined) return;
        const gate = this.#noEnter;
        if (gate !== undefined) {
          await gate.open;
          continue;
        }
        this.#mode[index] = IN_GUEST;
        // Interrupts posted while the vCPU was out reach the TD's virtual APIC on entry (tdx_vcpu_run: pi_test_on).
        if (vm.enterExit.hasPosted(index)) syncPostedInterrupts(vm, index);
        let regs: Gprs;
        try {
          // A failed entry answers at once; an entry into guest mode answers at the vCPU's next exit.
          const entered = vm.module.seamcall(VP_ENTER, next);
          regs = Array.isArray(entered) ? entered : await entered;
        } finally {
          this.#mode[index] = OUTSIDE;
          this.#returns[index] = (this.#returns[index] as number) + 1;
        }
        const status = regs[Reg.RAX] as bigint;
        // An exit (bit 63 clear, the common answer) is not BUSY: no decoding for it.
        if (status >= ERROR_BIT && isStatus(status, TdxStatus.OPERAND_BUSY)) {
          // BUSY from the zero-step filter (SEPT tree) or a TRACK (TD epoch): leave the fast path and enter again,
          // with the same registers, once the contending host operation had a chance to finish.
          vm.counters.busySeen++;
          await backOff(vm, index);
          continue;
        }
        // An exit handled without waiting (a fault whose SEAMCALLs answered at once) is answered at once: no await.
        const answer = vmm.onTdExit({ tdr: vm.td.tdr, tdvpr, vcpuIndex: index, regs });
        const reply = answer === undefined || Array.isArray(answer) ? answer : await answer;
        if (reply === undefined) return;
        next = withTdvpr(reply, tdvprRegister);
      }
    } finally {
      vm.module.stopVcpu(tdvpr);
    }
  }
}
