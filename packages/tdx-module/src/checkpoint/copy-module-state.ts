import type { ModuleState } from '../core/module-state.js';
import type { TdControl } from '../td/td-control.js';

/**
 * Makes `to` (a module state nothing runs on) an independent copy of `from`, which must be quiescent: PAMT, memory
 * contents, TDs with their S-EPT and vCPUs, shared EPTs and HKIDs. Services (clock, scheduler, trace) stay `to`'s.
 * Each class copies itself (`clone` / `copyFrom`), so a change to one class's representation changes one method.
 */
export function copyModuleState(from: ModuleState, to: ModuleState): void {
  to.pamt.copyFrom(from.pamt);
  to.memory.copyFrom(from.memory);
  to.tds.clear();
  to.vcpusByTdvpr.clear();
  to.sharedEpts.clear();
  to.hkidsInUse.clear();
  const copies = new Map<TdControl, TdControl>();
  const copyOf = (td: TdControl): TdControl => {
    let copy = copies.get(td);
    if (copy === undefined) {
      copy = td.clone();
      copies.set(td, copy);
    }
    return copy;
  };
  for (const [tdr, td] of from.tds) to.tds.set(tdr, copyOf(td));
  // A vCPU outlives its TD's entry here while teardown reclaims the TDR before the TDVPR.
  for (const [tdvpr, { td, vcpu }] of from.vcpusByTdvpr) {
    const tdCopy = copyOf(td);
    to.vcpusByTdvpr.set(tdvpr, { td: tdCopy, vcpu: tdCopy.vcpus.get(tdvpr) ?? vcpu.clone() });
  }
  for (const [tdr, ept] of from.sharedEpts) to.sharedEpts.set(tdr, ept.clone());
  for (const hkid of from.hkidsInUse) to.hkidsInUse.add(hkid);
}
