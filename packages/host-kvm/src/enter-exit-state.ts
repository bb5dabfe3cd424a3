import type { ResolvedEnterExitOptions } from './enter-exit-options.js';
import { Msr } from './enter-exit-options.js';

/** What KVM counted on the enter/exit path. */
export interface EnterExitCounters {
  /** NMI exits (their NMI handled right after TDH.VP.ENTER returned). */
  nmiExits: number;
  /** External-interrupt exits (irq_exits). */
  irqExits: number;
  /** TDG.VP.VMCALL<Instruction.HLT> exits, and how many of them blocked the vCPU. */
  haltExits: number;
  haltsBlocked: number;
  /** Virtual interrupts posted to vCPUs (tdx_deliver_interrupt). */
  interruptsPosted: number;
  /** TDG.VP.VMCALLs by sub-function name. */
  tdvmcalls: Record<string, number>;
  /** Exits to userspace by kind (KVM_EXIT_TDX, KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_SYSTEM_EVENT). */
  userspaceExits: Record<string, number>;
  /** GetQuote requests userspace completed (quote written, or an error status), and the event-notify interrupts sent. */
  quotesCompleted: number;
  notifyInterrupts: number;
}

/** The TD's TDG.VP.VMCALL<ReportFatalError>, as userspace (QEMU) decodes what KVM hands it. */
export interface FatalErrorReport {
  readonly vcpu: number;
  /** R12: bits 31:0 the error code (0 is a panic), bit 63 says R13 holds a GPA. */
  readonly errorCode: bigint;
  /** The message from R14, R15, RBX, RDI, RSI, R8, R9, RDX (those the guest exposed), up to the first NUL. */
  readonly message: string;
  /** R13, when bit 63 of the error code says it is valid. */
  readonly gpa: bigint | undefined;
  /** QEMU refuses an error code with bits 15:0 set (it reports an invalid error code); the VM stops either way. */
  readonly validErrorCode: boolean;
  /** The 16 GPRs KVM passes to userspace (KVM_SYSTEM_EVENT_TDX_FATAL), RAX first: RSP and RBP read as 0. */
  readonly registers: readonly bigint[];
}

/**
 * KVM's per-VM state for the enter/exit path: each vCPU's posted-interrupt requests (the PIR of its posted-interrupt
 * descriptor, KVM's own memory), halted vCPUs waiting for an event, the emulated MSRs, the event-notify vector
 * userspace recorded, the GetQuote requests in flight and the fatal error a guest reported.
 */
export class EnterExitState {
  readonly options: ResolvedEnterExitOptions;
  readonly counters: EnterExitCounters = {
    nmiExits: 0,
    irqExits: 0,
    haltExits: 0,
    haltsBlocked: 0,
    interruptsPosted: 0,
    tdvmcalls: {},
    userspaceExits: {},
    quotesCompleted: 0,
    notifyInterrupts: 0,
  };
  /** Per vCPU: the emulated MSRs' values. */
  readonly msrs: Map<number, bigint>[];
  /** SetupEventNotifyInterrupt as userspace recorded it: the vector and the vCPU that asked. */
  eventNotify: { readonly vector: number; readonly vcpu: number } | undefined;
  quotesInFlight = 0;
  fatalError: FatalErrorReport | undefined;
  readonly #pir: Set<number>[];
  readonly #wake: ((() => void) | undefined)[];

  constructor(vcpus: number, options: ResolvedEnterExitOptions) {
    this.options = options;
    this.msrs = [];
    this.#pir = [];
    this.#wake = [];
    for (let i = 0; i < vcpus; i++) {
      const msrs = new Map(options.msrs);
      // x2APIC enabled at the default base, BSP on vCPU 0 (LAPIC_MODE_X2APIC | MSR_IA32_APICBASE_BSP).
      if (!msrs.has(Msr.IA32_APICBASE)) msrs.set(Msr.IA32_APICBASE, 0xfee0_0c00n | (i === 0 ? 0x100n : 0n));
      this.msrs.push(msrs);
      this.#pir.push(new Set());
      this.#wake.push(undefined);
    }
  }

  count(table: Record<string, number>, key: string): void {
    table[key] = (table[key] ?? 0) + 1;
  }

  /** Posts `vector` in vCPU `index`'s PIR and wakes it if it is halted. */
  post(index: number, vector: number): void {
    (this.#pir[index] as Set<number>).add(vector);
    this.wake(index);
  }

  /** Whether the PIR of vCPU `index` holds a vector (pi_has_pending_interrupt). */
  hasPosted(index: number): boolean {
    return (this.#pir[index] as Set<number>).size > 0;
  }

  /** Empties the PIR of vCPU `index` (the CPU moves it into the TD's virtual APIC), highest vector first. */
  takePosted(index: number): number[] {
    const pir = this.#pir[index] as Set<number>;
    if (pir.size === 0) return [];
    const vectors = [...pir].sort((a, b) => b - a);
    pir.clear();
    return vectors;
  }

  /** Resolves at the next wake-up of vCPU `index` (an interrupt posted to it, or the VM stopping). */
  waitForEvent(index: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake[index] = resolve;
    });
  }

  /** kvm_vcpu_wake_up. */
  wake(index: number): void {
    const wake = this.#wake[index];
    this.#wake[index] = undefined;
    wake?.();
  }

  wakeAll(): void {
    for (let i = 0; i < this.#wake.length; i++) this.wake(i);
  }
}
