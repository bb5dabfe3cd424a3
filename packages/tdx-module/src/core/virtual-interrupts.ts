import type { VcpuState } from '../td/vcpu.js';
import type { ModuleState } from './module-state.js';

/**
 * Virtual interrupts of a TD vCPU: the VMM posts a vector (posted interrupts: the CPU moves it into the virtual APIC's
 * IRR, TD-private state, without a TD exit) and the CPU delivers the highest pending vector to the guest at an
 * instruction boundary while the guest has interrupts enabled (RFLAGS.IF). No TPR/PPR: every vector is deliverable.
 */

/** Posts `vector` for the vCPU; its notification is pending at the host processor until the vIRR takes it. */
export function postVirtualInterrupt(vcpu: VcpuState, vector: number): void {
  const virr = vcpu.virr;
  if (virr[vector] === 0) {
    virr[vector] = 1;
    vcpu.virrCount++;
  }
  vcpu.interruptPending = true;
}

/** Delivers the highest pending vector to the guest's handler. Returns false when none is pending. */
export function deliverOneInterrupt(m: ModuleState, vcpu: VcpuState): boolean {
  if (vcpu.virrCount === 0) return false;
  // Read once: `virr` is a getter that makes the array on first use.
  const virr = vcpu.virr;
  let vector = 255;
  while (virr[vector] === 0) vector--;
  virr[vector] = 0;
  vcpu.virrCount--;
  vcpu.interruptPending = false;
  vcpu.interruptsTaken++;
  if (m.trace.enabled) {
    m.trace.record({
      kind: 'note',
      time: m.clock.now(),
      source: 'module',
      text: `vcpu ${vcpu.index}: virtual interrupt 0x${vector.toString(16)} delivered to the guest`,
    });
  }
  vcpu.interruptHandler?.(vector);
  return true;
}

/**
 * Delivers every pending vector the guest can take now: the vCPU is in guest mode, between instructions (no TDCALL
 * in progress) and has interrupts enabled.
 */
export function deliverVirtualInterrupts(m: ModuleState, vcpu: VcpuState): void {
  while (vcpu.virrCount > 0 && vcpu.interruptsEnabled && vcpu.run === 'in-guest' && !vcpu.inTdcall) {
    deliverOneInterrupt(m, vcpu);
  }
}

/**
 * The VCPU_STATE_DETAILS field a VMM reads with TDH.VP.RD: bit 0 (VMXIP) is set when a virtual interrupt is pending
 * above the processor priority, i.e. here whenever the vIRR holds a vector.
 * Source: intel/tdx-module 1.5.01 src/common/metadata_handlers/metadata_vp.c (computed from RVI and PPR on read).
 */
export function vcpuStateDetails(vcpu: VcpuState): bigint {
  return vcpu.virrCount > 0 ? 1n : 0n;
}
