import { SeptStateGroup, septStateInfo } from '../abi/sept-state.js';
import { ZERO_STEP_GPA_LIST_SIZE, ZERO_STEP_THRESHOLD } from '../abi/td-state.js';
import type { TdControl } from '../td/td-control.js';
import type { VcpuState } from '../td/vcpu.js';

/**
 * Zero-step mitigation bookkeeping (reference tdx-module.md §11): on every TD exit the counter and list reset if
 * the guest made instruction progress since the entry; a private-GPA hardware EPT violation counts up to the
 * threshold of 6, and from the 7th on adds the GPA to a list of at most 32.
 * Source: intel/tdx-module 1.5.01 src/td_transitions/td_exit_stepping.c.
 */
export function resetOnProgress(vcpu: VcpuState): void {
  if (vcpu.rip !== vcpu.ripAtEntry) {
    vcpu.zeroStepCount = 0;
    // Setting the length of an array, even an empty one, is a runtime call: this is every TD exit's path.
    if (vcpu.zeroStepGpas.length !== 0) vcpu.zeroStepGpas.length = 0;
  }
}

export function countPrivateEptViolation(vcpu: VcpuState, gpa: number): void {
  if (vcpu.zeroStepCount < ZERO_STEP_THRESHOLD) {
    vcpu.zeroStepCount++;
    return;
  }
  const page = gpa - (gpa % 4096);
  if (!vcpu.zeroStepGpas.includes(page) && vcpu.zeroStepGpas.length < ZERO_STEP_GPA_LIST_SIZE) {
    vcpu.zeroStepGpas.push(page);
  }
}

/** True if a full read/write/execute private translation of `gpa` would succeed now. */
export function translates(td: TdControl, gpa: number): boolean {
  const walk = td.tree.walk(gpa, 0);
  return septStateInfo(walk.state).leaf && SeptStateGroup.guestAccessibleLeaf.has(walk.state);
}
