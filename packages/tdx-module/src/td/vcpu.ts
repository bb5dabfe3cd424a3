import { HostCpu } from '../cpu/host-cpu.js';
import type { Gprs } from '../registers.js';

/** Where a vCPU is in the enter/exit cycle. */
export type VcpuRunState = 'stopped' | 'in-guest';

/** TDVPS of one vCPU: what the module keeps per vCPU. */
export class VcpuState {
  readonly tdvpr: number;
  readonly index: number;
  readonly tdcx: number[] = [];
  initialized = false;
  flushed = false;
  run: VcpuRunState = 'stopped';
  /** TD epoch recorded at the last entry (TLB tracking). */
  epoch = 0;
  /** Guest RIP stand-in: counts completed guest instructions (TDCALLs that advanced RIP, completed accesses). */
  rip = 0;
  /** RIP captured at the last TDH.VP.ENTER (zero-step reset rule). */
  ripAtEntry = 0;
  /** Zero-step: EPT-violation exits at the same RIP (possibly_epf_stepping). */
  zeroStepCount = 0;
  /** Zero-step: GPAs (4K-aligned) that must translate before the next entry. */
  readonly zeroStepGpas: number[] = [];
  /** Host-priority busy tracking: virtual time of the first BUSY_HOST_PRIORITY seen, or undefined. */
  hpBusySince: number | undefined;
  /** Registers of the last TDG.VP.VMCALL exit, and its gpr_select, awaiting the VMM's values. */
  vmcallSelect: bigint | undefined;
  /**
   * The notification of a posted interrupt is pending at the host processor (the VMM posted an interrupt and the CPU
   * has not yet moved it into the vIRR): a 2M ACCEPT stops for it after one chunk.
   */
  interruptPending = false;
  /** Virtual interrupts the guest took (delivered to its handler). */
  interruptsTaken = 0;
  /**
   * The virtual APIC's IRR: 1 for each vector posted and not yet delivered. TD-private state. Made at its first read
   * (most vCPUs never get an interrupt posted): 256 bytes are an ArrayBuffer of their own, one per vCPU copy, and a
   * restore per fuzz case made one.
   */
  get virr(): Uint8Array {
    this.#virr ??= new Uint8Array(256);
    return this.#virr;
  }
  #virr: Uint8Array | undefined;
  /** How many vectors are set in {@link virr}. */
  virrCount = 0;
  /** The guest's RFLAGS.IF: virtual interrupts are delivered only while it is set. */
  interruptsEnabled = true;
  /** The guest's interrupt handler (its IDT, in short); called with each vector delivered. */
  interruptHandler: ((vector: number) => void) | undefined;
  /** A TDCALL is executing (a kick waits for it to finish). */
  inTdcall = false;
  /** A kick arrived while the guest was inside an instruction; it exits once that completes. */
  kickPending = false;
  /** The vector of that kick (the IPI the host sent). */
  kickVector = 0;
  /** The host logical processor that the host thread entering this vCPU runs on: NMIs, SEAMCALL and SEAMRET. */
  readonly cpu: HostCpu;
  /** Resolved at the vCPU's next exit from guest mode (hosts waiting for their kick to be acknowledged). */
  readonly exitWaiters: (() => void)[] = [];
  /** Exits in a row for the same guest access without progress (simulator fuse). */
  stuckExits = 0;
  /** #VE information area: valid until the guest reads it with TDG.VP.VEINFO.GET. */
  veInfo: { exitReason: number; gpa: number } | undefined;
  /** Resolves the guest's wait for the next entry (with its registers, or 0 when the guest reads none). */
  resumeGuest: ((regs: Gprs | 0) => void) | undefined;
  /** Rejects the guest's wait: the host said it will not enter the vCPU again. */
  rejectGuest: ((error: Error) => void) | undefined;
  /**
   * The process-wide list of parked guests (see vcpu-runtime.ts), linked through the vCPUs themselves: parking and
   * resuming, once per TD exit, allocate nothing (a long-lived Map's table churned on every exit, in old space).
   */
  parkedListed = false;
  /** Whether the vCPU had been entered when its guest parked (only for the message of a guest left waiting). */
  parkedEntered = false;
  /** Whether the parked guest is resumed with the entry's registers (false: it reads none of them). */
  parkedWithRegs = true;
  parkedPrev: VcpuState | undefined;
  parkedNext: VcpuState | undefined;
  /** The host thread of this vCPU has ended (its VMM answered "stop"). */
  hostGone = false;
  /**
   * Resolves the host's TDH.VP.ENTER with the exit that ended the entry: its registers, or 0 when they wait in
   * {@link pendingExit}.
   */
  deliverExit: ((regs: Gprs | 0) => void) | undefined;
  /** The registers of a TD exit whose TDH.VP.ENTER has not read them yet (see VcpuRuntime.leaveGuest). */
  pendingExit: Gprs | undefined;
  /** Values the VMM passed to TDH.VP.ENTER for the guest (the selected GPRs of a VMCALL). */
  entryGprs: Gprs | undefined;

  /** The scheduler's name of this vCPU's guest code (yield points of its TDCALLs, loads and stores). */
  readonly guestActor: string;
  /** The scheduler's name of the host thread that enters this vCPU (TDH.VP.ENTER's yield points). */
  readonly hostActor: string;

  constructor(tdvpr: number, index: number) {
    this.tdvpr = tdvpr;
    this.index = index;
    this.cpu = new HostCpu(index);
    this.guestActor = `vcpu${index}`;
    this.hostActor = `vcpu${index}:host`;
  }

  /**
   * An independent copy of the TDVPS data of a stopped vCPU (checkpoints): the fields above, with a fresh host
   * processor. What links it to running code — waiters, the guest's interrupt handler, a pending exit or kick, the
   * host processor's NMI record — is not copied: a checkpoint refuses a vCPU that has any (see `checkpoint/`).
   */
  clone(): VcpuState {
    const copy = new VcpuState(this.tdvpr, this.index);
    copy.tdcx.push(...this.tdcx);
    copy.initialized = this.initialized;
    copy.flushed = this.flushed;
    copy.epoch = this.epoch;
    copy.rip = this.rip;
    copy.ripAtEntry = this.ripAtEntry;
    copy.zeroStepCount = this.zeroStepCount;
    copy.zeroStepGpas.push(...this.zeroStepGpas);
    copy.hpBusySince = this.hpBusySince;
    copy.vmcallSelect = this.vmcallSelect;
    copy.interruptPending = this.interruptPending;
    copy.interruptsTaken = this.interruptsTaken;
    // No IRR yet: nothing was ever posted, and the copy makes its own at its first read.
    if (this.#virr !== undefined) copy.#virr = this.#virr.slice();
    copy.virrCount = this.virrCount;
    copy.interruptsEnabled = this.interruptsEnabled;
    copy.stuckExits = this.stuckExits;
    copy.veInfo = this.veInfo === undefined ? undefined : { ...this.veInfo };
    copy.hostGone = this.hostGone;
    copy.entryGprs = this.entryGprs?.slice();
    return copy;
  }
}
