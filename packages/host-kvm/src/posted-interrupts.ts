import type { KvmRun } from './kvm-run.js';
import type { VmState } from './vm-state.js';

/**
 * An interrupt for vCPU `index` (from userspace's irqchip, a device, or the GetQuote notification), the way KVM
 * delivers every interrupt to a TD: posted (tdx_deliver_interrupt → __vmx_deliver_posted_interrupt, "TDX supports
 * only posted interrupt"). The vector goes into KVM's PIR; a vCPU in guest mode gets the notification at once and the
 * CPU moves the PIR into the TD's virtual APIC without a TD exit; a vCPU outside it gets it at its next entry
 * (tdx_vcpu_run sends itself the notification when the descriptor is marked), and a halted vCPU wakes up. Until
 * then the vCPU has an event pending (kvm_vcpu_has_events sees the PIR): a MapGPA in progress ends with RETRY.
 */
export function deliverInterrupt(vm: VmState, run: KvmRun, index: number, vector: number): void {
  const state = vm.enterExit;
  state.counters.interruptsPosted++;
  state.post(index, vector);
  if (run.inGuest(index)) syncPostedInterrupts(vm, index);
}

/** The posted-interrupt notification reaches the CPU: the PIR of vCPU `index` moves into the TD's virtual APIC. */
export function syncPostedInterrupts(vm: VmState, index: number): void {
  const tdvpr = vm.td.tdvprs[index] as number;
  for (const vector of vm.enterExit.takePosted(index)) vm.module.postInterrupt(tdvpr, vector);
}
