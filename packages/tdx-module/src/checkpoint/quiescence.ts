import type { ModuleState } from '../core/module-state.js';
import { TdxSimError } from '../errors.js';
import { HP_FLAG } from '../locks/host-priority-lock.js';
import type { TdControl } from '../td/td-control.js';
import type { VcpuState } from '../td/vcpu.js';

/**
 * Why the module is not quiescent, or undefined when it is: a checkpoint copies data, never code in flight, so it
 * refuses while a flow is suspended (a vCPU in guest mode or inside a TDCALL, a host thread waiting in TDH.VP.ENTER,
 * work registered with holdWhile), while any lock is held (PAMT, S-EPT entry, OP_STATE, epoch, S-EPT tree), and where
 * a vCPU carries something a copy cannot take along (the guest's interrupt handler, the host processor's NMI record).
 * A PAMT entry's HOST_PRIORITY flag alone is no hold (as in the invariants): it is data the copy keeps, and it can stay
 * set for as long as no host attempt on that entry succeeds (the TDR's 2M entry, which TDH.VP.ENTER's implicit TDR
 * lock never touches).
 */
export function notQuiescent(m: ModuleState, externalWork: number): string | undefined {
  if (externalWork !== 0)
    return `${externalWork} piece(s) of work registered with holdWhile have not settled`;
  let lockedHpa: number | undefined;
  m.pamt.forEachUsed((hpa, _level, _type, _owner, lock) => {
    if ((lock & ~HP_FLAG) !== 0 && lockedHpa === undefined) lockedHpa = hpa;
  });
  if (lockedHpa !== undefined) return `the PAMT entry of 0x${lockedHpa.toString(16)} is locked`;
  const seen = new Set<TdControl>();
  for (const owner of [...m.tds.values(), ...[...m.vcpusByTdvpr.values()].map((o) => o.td)]) {
    if (seen.has(owner)) continue;
    seen.add(owner);
    const why = tdBusy(owner);
    if (why !== undefined) return `TD 0x${owner.tdr.toString(16)}: ${why}`;
  }
  for (const { vcpu } of m.vcpusByTdvpr.values()) {
    const why = vcpuBusy(vcpu);
    if (why !== undefined) return `vCPU ${vcpu.index} (TDVPR 0x${vcpu.tdvpr.toString(16)}): ${why}`;
  }
  return undefined;
}

/** Throws NOT_QUIESCENT (argument `module`) unless {@link notQuiescent} finds nothing. */
export function assertQuiescent(m: ModuleState, externalWork: number): void {
  const why = notQuiescent(m, externalWork);
  if (why !== undefined)
    throw new TdxSimError('NOT_QUIESCENT', `cannot checkpoint the module while ${why}`, 'module');
}

function tdBusy(td: TdControl): string | undefined {
  if (td.opStateLock !== 0) return 'its OP_STATE lock is held';
  if (!td.epochLock.free) return 'its epoch lock is held';
  if (!td.septTreeLock.free) return 'its S-EPT tree lock is held';
  if (td.sept !== undefined) {
    for (const { table, baseGpa } of td.sept.tables()) {
      const index = table.lock.findIndex((bits) => bits !== 0);
      if (index >= 0) {
        const gpa = baseGpa + index * 2 ** (12 + 9 * table.level);
        return `the S-EPT entry of GPA 0x${gpa.toString(16)} at level ${table.level} is locked`;
      }
    }
  }
  return undefined;
}

function vcpuBusy(vcpu: VcpuState): string | undefined {
  if (vcpu.run !== 'stopped') return 'it is in guest mode';
  if (vcpu.deliverExit !== undefined) return 'a host thread waits in TDH.VP.ENTER for its exit';
  if (vcpu.resumeGuest !== undefined || vcpu.rejectGuest !== undefined)
    return 'guest code waits for its next entry';
  if (vcpu.inTdcall) return 'a TDCALL is executing';
  if (vcpu.exitWaiters.length > 0) return 'a host thread waits for it to exit';
  if (vcpu.kickPending) return 'a kick is pending';
  if (vcpu.interruptHandler !== undefined) return 'the guest installed an interrupt handler (guest code)';
  if (vcpu.cpu.mode !== 'vmx-root') return `its host processor is in ${vcpu.cpu.mode}`;
  if (vcpu.cpu.arrivals.length > 0 || vcpu.cpu.latched !== undefined)
    return 'its host processor has an NMI record (not captured by a checkpoint)';
  return undefined;
}
