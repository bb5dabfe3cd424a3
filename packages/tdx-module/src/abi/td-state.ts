import { assertIntegerInRange } from '../errors.js';

/**
 * TD life-cycle states (in the TDR) and OP_STATE values (in the TDCS), with the attributes and config flags the
 * model reads from TD_PARAMS.
 * Source: intel/tdx-module 1.5.01 src/common/data_structures/td_control_structures.h,
 * include/auto_gen/op_state_lookup.h (reference §13); Linux arch/x86/kvm/vmx/tdx_arch.h (TD_PARAMS layout).
 */
export const LifecycleState = {
  HKID_ASSIGNED: 0,
  KEYS_CONFIGURED: 1,
  BLOCKED: 2,
  TEARDOWN: 3,
} as const;
export type LifecycleState = (typeof LifecycleState)[keyof typeof LifecycleState];

/**
 * TD operation states (OP_STATE in the TDCS): which SEAMCALLs a TD accepts in each (reference tdx-module.md
 * §13).
 */
export const OpState = {
  UNINITIALIZED: 0,
  INITIALIZED: 1,
  RUNNABLE: 2,
  LIVE_EXPORT: 3,
  PAUSED_EXPORT: 4,
  POST_EXPORT: 5,
  MEMORY_IMPORT: 6,
  STATE_IMPORT: 7,
  POST_IMPORT: 8,
  LIVE_IMPORT: 9,
  FAILED_IMPORT: 10,
} as const;
/** A value of {@link OpState}. */
export type OpState = (typeof OpState)[keyof typeof OpState];

/** The name of an OP_STATE value, or `OP_STATE_<n>` for a value outside the table. */
export function opStateName(state: number): string {
  assertIntegerInRange('state', state, 0, 0xff);
  return Object.entries(OpState).find(([, value]) => value === state)?.[0] ?? `OP_STATE_${state}`;
}

/** TD ATTRIBUTES bits (TD_PARAMS offset 0). */
export const TdAttribute = {
  DEBUG: 1n << 0n,
  /** SEPT_VE_DISABLE: a guest access to a PENDING page exits to the VMM instead of raising #VE. */
  SEPT_VE_DISABLE: 1n << 28n,
  PKS: 1n << 30n,
  KL: 1n << 31n,
  PERFMON: 1n << 63n,
} as const;

/** TD_PARAMS CONFIG_FLAGS bits (offset 32). */
export const TdConfigFlag = {
  /** 0: shared bit is GPA[47] (GPAW 48); 1: GPA[51] (GPAW 52). */
  MAX_GPAW: 1n << 0n,
  /** TDG.VP.VMCALL may not expose RBP. */
  NO_RBP_MOD: 1n << 2n,
} as const;

/** Byte offsets of the TD_PARAMS fields the model reads (the structure is 1024 bytes, 1024-aligned). */
export const TdParamsOffset = {
  ATTRIBUTES: 0,
  XFAM: 8,
  MAX_VCPUS: 16,
  EPTP_CONTROLS: 24,
  CONFIG_FLAGS: 32,
  TSC_FREQUENCY: 40,
} as const;
/** Size in bytes of the TD_PARAMS structure TDH.MNG.INIT reads (1024, and it must be 1024-aligned). */
export const TD_PARAMS_SIZE = 1024;

/** TDH.MNG.WR field id of the host-priority lock timeout, in microseconds (reference §10.5). */
export const HP_LOCK_TIMEOUT_FIELD_ID = 0x9110000300000011n;
/** Smallest host-priority lock timeout TDH.MNG.WR accepts, in microseconds. */
export const HP_LOCK_TIMEOUT_MIN_US = 10_000;
/** Largest host-priority lock timeout TDH.MNG.WR accepts, in microseconds. */
export const HP_LOCK_TIMEOUT_MAX_US = 100_000_000;
/** Host-priority lock timeout of a new TD, in microseconds. */
export const HP_LOCK_TIMEOUT_DEFAULT_US = 1_000_000;

/** Zero-step mitigation constants (reference §11). */
export const ZERO_STEP_THRESHOLD = 6;
/** GPAs the zero-step mitigation remembers per vCPU that must translate before the next entry. */
export const ZERO_STEP_GPA_LIST_SIZE = 32;
