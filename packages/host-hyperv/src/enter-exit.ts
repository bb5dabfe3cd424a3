import {
  type Gprs,
  type HostSeamcalls,
  Reg,
  type TdExitEvent,
  TdvmcallStatus,
  type TdxModule,
  TdxStatus,
  VCPU_STATE_DETAILS_VMXIP,
  VmExitReason,
} from '@tdxsim/tdx-module';
import { HypervError } from './errors.js';
import { assertAddress, assertExit, assertFunction, assertInteger, assertMethods } from './validation.js';

/** HV_STATUS_INVALID_HYPERCALL_CODE (Hyper-V TLFS): the answer to a hypercall code the hypervisor does not know. */
export const HV_STATUS_INVALID_HYPERCALL_CODE = 2n;

/** What the Hyper-V model counted on the enter/exit path. */
export interface HypervEnterExitCounters {
  nmiExits: number;
  irqExits: number;
  haltExits: number;
  /** TDG.VP.VMCALLs with R10 ≠ 0: Hyper-V hypercalls (control in R10). */
  hypercalls: number;
}

/**
 * The enter/exit path of the Hyper-V model: what is public of Hyper-V's handling of a fully enlightened TDX guest,
 * and nothing more.
 * - NMI exits: the host runs its NMI handler for the NMI the exit consumed, then enters again (what the host does
 *   with it is not public; the model handles it at once, as KVM does).
 * - External-interrupt exits: entered again.
 * - TDG.VP.VMCALL with R10 ≠ 0 is a Hyper-V hypercall (Linux hv_tdx_hypercall: control in R10, input and output GPAs
 *   in RDX and R8, the status back in R11). None is modelled: R11 = HV_STATUS_INVALID_HYPERCALL_CODE.
 * - TDG.VP.VMCALL<Instruction.HLT> (Linux's idle on Hyper-V, tdx_safe_halt): the vCPU halts until an interrupt is
 *   allowed and pending (R12 = 0 and VCPU_STATE_DETAILS.VMXIP, or one posted by {@link HypervInterrupts.deliver});
 *   then SUCCESS. How Hyper-V decides to wake a halted vCPU is not public: this is the model's.
 * Anything else is not handled here (undefined): MapGPA is the backend's; every other GHCI sub-function answers
 * SUBFUNC_UNSUPPORTED there, since Hyper-V's answers to them are not public.
 */
export class HypervInterrupts {
  readonly counters: HypervEnterExitCounters = { nmiExits: 0, irqExits: 0, haltExits: 0, hypercalls: 0 };
  readonly #module: TdxModule;
  readonly #host: HostSeamcalls;
  readonly #tdvprs: readonly number[];
  readonly #wake: ((() => void) | undefined)[];

  constructor(module: TdxModule, host: HostSeamcalls, tdvprs: readonly number[]) {
    assertMethods('module', module, 'a TdxModule', ['postInterrupt', 'handleNmiExit']);
    assertMethods('host', host, 'a HostSeamcalls', ['vpRead']);
    if (!Array.isArray(tdvprs) || tdvprs.length === 0)
      throw new HypervError(
        'INVALID_ARGUMENT',
        'tdvprs must be a non-empty array of TDVPR addresses',
        'tdvprs',
      );
    tdvprs.forEach((tdvpr, i) => {
      assertAddress(`tdvprs[${i}]`, tdvpr);
    });
    this.#module = module;
    this.#host = host;
    this.#tdvprs = tdvprs;
    this.#wake = tdvprs.map(() => undefined);
  }

  /** An interrupt for vCPU `index`: into the TD's virtual APIC (posted), and a halted vCPU wakes up. */
  deliver(index: number, vector: number): void {
    assertInteger('index', index, 0, this.#tdvprs.length - 1);
    assertInteger('vector', vector, 16, 255);
    this.#module.postInterrupt(this.#tdvprs[index] as number, vector);
    this.wake(index);
  }

  /** Wakes vCPU `index` if it is halted waiting for an interrupt (a no-op otherwise). */
  wake(index: number): void {
    assertInteger('index', index, 0, this.#tdvprs.length - 1);
    const wake = this.#wake[index];
    this.#wake[index] = undefined;
    wake?.();
  }

  /** Answers the exits of the enter/exit path; undefined for the others. */
  async answer(exit: TdExitEvent, stopped: () => boolean): Promise<Gprs | undefined> {
    assertExit('exit', exit);
    assertFunction('stopped', stopped);
    const regs = exit.regs;
    const reason = Number((regs[Reg.RAX] as bigint) & 0xffffn);
    if (reason === VmExitReason.EXCEPTION_NMI) {
      this.counters.nmiExits++;
      this.#module.handleNmiExit(exit.tdvpr);
      return regs.slice();
    }
    if (reason === VmExitReason.EXTERNAL_INTERRUPT) {
      this.counters.irqExits++;
      return regs.slice();
    }
    if (reason !== VmExitReason.TDCALL) return undefined;
    if ((regs[Reg.R10] as bigint) !== 0n) {
      this.counters.hypercalls++;
      const reply = regs.slice();
      reply[Reg.R11] = HV_STATUS_INVALID_HYPERCALL_CODE;
      return reply;
    }
    if ((regs[Reg.R11] as bigint) !== BigInt(VmExitReason.HLT)) return undefined;
    this.counters.haltExits++;
    const allowed = (regs[Reg.R12] as bigint) === 0n;
    while (!stopped()) {
      if (allowed) {
        const read = await this.#host.vpRead(exit.tdvpr);
        if (read.status === TdxStatus.SUCCESS && (read.r8 & VCPU_STATE_DETAILS_VMXIP) !== 0n) break;
      }
      await new Promise<void>((resolve) => {
        this.#wake[exit.vcpuIndex] = resolve;
      });
    }
    const reply = regs.slice();
    reply[Reg.R10] = TdvmcallStatus.SUCCESS;
    return reply;
  }
}
