/**
 * @tdxsim/host-hyperv: a Hyper-V-like VMM backend for tdxsim — MapGPA converting at most N pages per call and
 * answering RETRY with the next GPA (optionally without progress), with eager conversion of its own.
 */

export { hypervVmm } from './container.js';
export {
  type HypervCounters,
  HypervError,
  type HypervErrorCode,
  HypervVmm,
  type HypervVmmOptions,
} from './hyperv-vmm.js';
