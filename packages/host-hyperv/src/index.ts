/**
 * @tdxsim/host-hyperv: a Hyper-V-like VMM backend for tdxsim — MapGPA converting at most N pages per call and
 * answering RETRY with the next GPA (optionally without progress), with eager conversion of its own.
 */

export type { HypervTdCheckpoint } from './adopt.js';
export { hypervVmm } from './container.js';
export {
  HV_STATUS_INVALID_HYPERCALL_CODE,
  type HypervEnterExitCounters,
  HypervInterrupts,
} from './enter-exit.js';
export { HypervError, type HypervErrorCode } from './errors.js';
export { type HypervLeaf, HypervTables } from './hyperv-tables.js';
export { type HypervCounters, HypervVmm } from './hyperv-vmm.js';
export { type HypervVmmOptions, resolveHypervOptions } from './options.js';
