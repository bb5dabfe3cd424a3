import { createHash } from 'node:crypto';
import { KvmError } from './errors.js';

/** One entry of the CPUID table userspace gives KVM (KVM_SET_CPUID2). */
export interface CpuidEntry {
  readonly leaf: number;
  /** The sub-leaf (ECX) when it is significant; leave it out for a leaf whose sub-leaf does not matter. */
  readonly subleaf?: number;
  readonly eax: number;
  readonly ebx: number;
  readonly ecx: number;
  readonly edx: number;
}

/** A port I/O request KVM hands to userspace (KVM_EXIT_IO). */
export interface PortIoRequest {
  readonly vcpu: number;
  readonly port: number;
  readonly size: 1 | 2 | 4;
  readonly write: boolean;
  /** The value written (masked to `size`); 0n for a read. */
  readonly value: bigint;
}

/** An MMIO request KVM hands to userspace (KVM_EXIT_MMIO): `gpa` with the shared bit removed. */
export interface MmioRequest {
  readonly vcpu: number;
  readonly gpa: number;
  readonly size: 1 | 2 | 4 | 8;
  readonly write: boolean;
  readonly value: bigint;
}

/**
 * The quote generation service userspace talks to (QEMU's quote-generation-socket): given the request the guest put
 * in its GetQuote buffer (a TDREPORT wrapped as the service wants it), it answers the quote. Throwing is a failed
 * generation (header status ERROR).
 */
export type QuoteService = (request: Uint8Array) => Uint8Array | Promise<Uint8Array>;

/**
 * What the VMM process (userspace, modelled on upstream QEMU) does with the TDVMCALLs KVM hands it: KVM_EXIT_TDX for
 * GetQuote, SetupEventNotifyInterrupt and GetTdVmCallInfo leaf 1, KVM_EXIT_IO and KVM_EXIT_MMIO for the devices.
 * Source: qemu target/i386/kvm/tdx.c (tdx_handle_get_quote, tdx_handle_setup_event_notify_interrupt,
 * tdx_handle_get_tdvmcall_info, tdx_handle_report_fatal_error).
 */
export interface KvmUserspaceOptions {
  /**
   * GetQuote: a {@link QuoteService} (default: a stand-in that answers a fixed prefix and the SHA-384 of the request),
   * `'no-qgs'` (QEMU without a quote-generation socket: SUCCESS, header status QGS_UNAVAILABLE) or `'unsupported'`
   * (userspace leaves KVM's preset SUBFUNC_UNSUPPORTED).
   */
  readonly getQuote?: QuoteService | 'no-qgs' | 'unsupported';
  /** GetQuote requests in flight at most; one more is answered RETRY. QEMU: 16 (TDX_MAX_GET_QUOTE_REQUEST). */
  readonly maxQuotesInFlight?: number;
  /** SetupEventNotifyInterrupt: `'supported'` (default, QEMU records the vector and the vCPU) or `'unsupported'`. */
  readonly setupEventNotify?: 'supported' | 'unsupported';
  /** The port-I/O device model: answers a read's value (default: no device, reads are all ones). */
  readonly portIo?: (request: PortIoRequest) => bigint | undefined;
  /** The MMIO device model: answers a read's value (default: no device, reads are zero). */
  readonly mmio?: (request: MmioRequest) => bigint | undefined;
}

/** The options of the enter/exit path, resolved. */
export interface ResolvedEnterExitOptions {
  readonly cpuid: readonly CpuidEntry[];
  /** Initial values of the MSRs KVM emulates for a TD, by index (KVM's reset values unless overridden). */
  readonly msrs: ReadonlyMap<number, bigint>;
  readonly getQuote: QuoteService | 'no-qgs' | 'unsupported';
  readonly maxQuotesInFlight: number;
  readonly setupEventNotify: 'supported' | 'unsupported';
  /** The port I/O device (KVM_EXIT_IO), or undefined for none: reads all ones. */
  readonly portIo: ((request: PortIoRequest) => bigint | undefined) | undefined;
  /** The MMIO device (KVM_EXIT_MMIO), or undefined for none: reads zero. */
  readonly mmio: ((request: MmioRequest) => bigint | undefined) | undefined;
}

/** KVM's own hypervisor CPUID leaves, the ones a TD asks the VMM for (its other leaves the TDX module virtualizes). */
export const DEFAULT_CPUID: readonly CpuidEntry[] = [
  // KVM_CPUID_SIGNATURE: max leaf 0x40000001 and "KVMKVMKVM\0\0\0" (arch/x86/include/uapi/asm/kvm_para.h).
  { leaf: 0x4000_0000, eax: 0x4000_0001, ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x4d },
  // KVM_CPUID_FEATURES: the KVM features QEMU allows a TD (TDX_SUPPORTED_KVM_FEATURES in qemu target/i386/kvm/tdx.c):
  // NOP_IO_DELAY (1), PV_UNHALT (7), PV_TLB_FLUSH (9), PV_SEND_IPI (11), POLL_CONTROL (12), PV_SCHED_YIELD (13),
  // MSI_EXT_DEST_ID (15).
  { leaf: 0x4000_0001, eax: 0xba82, ebx: 0, ecx: 0, edx: 0 },
];

/** MSR indexes the enter/exit path names. */
export const Msr = {
  IA32_FEAT_CTL: 0x3a,
  IA32_APICBASE: 0x1b,
  IA32_UCODE_REV: 0x8b,
  MTRRCAP: 0xfe,
  IA32_MISC_ENABLE: 0x1a0,
  IA32_CR_PAT: 0x277,
  IA32_MCG_EXT_CTL: 0x4d0,
  IA32_TSC_DEADLINE: 0x6e0,
  EFER: 0xc000_0080,
  KVM_POLL_CONTROL: 0x4b56_4df5,
} as const;

/**
 * Reset values of the MSRs KVM emulates for a TD, as KVM sets them (kvm_vcpu_reset; tdx_vcpu_create for EFER;
 * kvm_get_msr_common for MTRRcap: 0x500 | 8 variable MTRRs). IA32_APICBASE is set per vCPU (x2APIC at 0xFEE00000,
 * BSP on vCPU 0); IA32_FEAT_CTL reads LOCKED (tdx_get_msr). Every other emulated MSR starts at 0.
 */
const DEFAULT_MSRS: readonly (readonly [number, bigint])[] = [
  [Msr.EFER, 0xd01n],
  [Msr.IA32_CR_PAT, 0x0007_0406_0007_0406n],
  [Msr.IA32_MISC_ENABLE, 0x1800n],
  [Msr.IA32_UCODE_REV, 0x1_0000_0000n],
  [Msr.MTRRCAP, 0x508n],
  [Msr.KVM_POLL_CONTROL, 1n],
  [Msr.IA32_FEAT_CTL, 1n],
];

const USERSPACE_KEYS = ['getQuote', 'maxQuotesInFlight', 'setupEventNotify', 'portIo', 'mmio'];

function u32(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff_ffff;
}

/** Checks and fills the options of the enter/exit path (a KvmError naming the bad one, before anything runs). */
export function resolveEnterExitOptions(
  cpuid: readonly CpuidEntry[] | undefined,
  msrs: Readonly<Record<number, bigint>> | undefined,
  userspace: KvmUserspaceOptions | undefined,
): ResolvedEnterExitOptions {
  if (cpuid !== undefined) {
    if (!Array.isArray(cpuid)) throw new KvmError('INVALID_OPTION', 'cpuid must be an array', 'cpuid');
    cpuid.forEach((entry, i) => {
      const fields = [entry?.leaf, entry?.eax, entry?.ebx, entry?.ecx, entry?.edx];
      if (!fields.every(u32) || (entry.subleaf !== undefined && !u32(entry.subleaf)))
        throw new KvmError(
          'INVALID_OPTION',
          `cpuid[${i}] needs 32-bit leaf, eax, ebx, ecx, edx`,
          `cpuid[${i}]`,
        );
    });
  }
  const table = new Map<number, bigint>(DEFAULT_MSRS);
  if (msrs !== undefined) {
    if (typeof msrs !== 'object' || msrs === null)
      throw new KvmError('INVALID_OPTION', 'msrs must be an object of index → bigint', 'msrs');
    for (const [key, value] of Object.entries(msrs)) {
      const index = Number(key);
      if (!u32(index) || typeof value !== 'bigint' || value < 0n || value >= 1n << 64n)
        throw new KvmError(
          'INVALID_OPTION',
          `msrs[${key}] must be a 64-bit bigint at a 32-bit index`,
          'msrs',
        );
      table.set(index, value);
    }
  }
  const user = userspace ?? {};
  if (typeof user !== 'object' || user === null)
    throw new KvmError('INVALID_OPTION', 'userspace must be an object', 'userspace');
  for (const key of Object.keys(user)) {
    if (!USERSPACE_KEYS.includes(key))
      throw new KvmError('UNKNOWN_OPTION', `kvmVmm: unknown option "userspace.${key}"`, `userspace.${key}`);
  }
  const getQuote = user.getQuote ?? defaultQuoteService;
  if (typeof getQuote !== 'function' && getQuote !== 'no-qgs' && getQuote !== 'unsupported')
    throw new KvmError(
      'INVALID_OPTION',
      "userspace.getQuote must be a function, 'no-qgs' or 'unsupported'",
      'userspace.getQuote',
    );
  const maxQuotes = user.maxQuotesInFlight ?? 16;
  if (!Number.isSafeInteger(maxQuotes) || maxQuotes < 1)
    throw new KvmError(
      'INVALID_OPTION',
      `userspace.maxQuotesInFlight must be a positive integer, got ${String(maxQuotes)}`,
      'userspace.maxQuotesInFlight',
    );
  const notify = user.setupEventNotify ?? 'supported';
  if (notify !== 'supported' && notify !== 'unsupported')
    throw new KvmError(
      'INVALID_OPTION',
      "userspace.setupEventNotify must be 'supported' or 'unsupported'",
      'userspace.setupEventNotify',
    );
  for (const key of ['portIo', 'mmio'] as const) {
    if (user[key] !== undefined && typeof user[key] !== 'function')
      throw new KvmError('INVALID_OPTION', `userspace.${key} must be a function`, `userspace.${key}`);
  }
  return {
    cpuid: cpuid ?? DEFAULT_CPUID,
    msrs: table,
    getQuote,
    maxQuotesInFlight: maxQuotes,
    setupEventNotify: notify,
    portIo: user.portIo,
    mmio: user.mmio,
  };
}

/**
 * The default quote service: a stand-in, not a real quote — "tdxsim quote v1\0" followed by the SHA-384 of the
 * request, so a test can tell the quote answers its own request.
 */
export function defaultQuoteService(request: Uint8Array): Uint8Array {
  if (!(request instanceof Uint8Array))
    throw new KvmError('INVALID_ARGUMENT', 'request must be a Uint8Array', 'request');
  const prefix = new TextEncoder().encode('tdxsim quote v1\0');
  const digest = createHash('sha384').update(request).digest();
  const quote = new Uint8Array(prefix.length + digest.length);
  quote.set(prefix);
  quote.set(digest, prefix.length);
  return quote;
}
