import { EeqType, VmExitReason } from '../abi/exit-reason.js';
import { isSharedGpa, sharedBit, toPrivateGpa } from '../abi/gpa.js';
import { levelSpan } from '../abi/page-level.js';
import { PamtPageType } from '../abi/page-type.js';
import { SeptStateGroup, septStateInfo } from '../abi/sept-state.js';
import { accessExit } from '../core/exit-registers.js';
import type { ModuleState } from '../core/module-state.js';
import type { VcpuRuntime } from '../core/vcpu-runtime.js';
import { TdxSimError } from '../errors.js';
import type { Gprs } from '../registers.js';
import type { TdControl } from '../td/td-control.js';
import type { VcpuState } from '../td/vcpu.js';

/** How a guest access ended. */
export type GuestAccessResult =
  | { readonly kind: 'ok'; readonly data: Uint8Array }
  /** A #VE was injected (PENDING page without SEPT_VE_DISABLE): the access did not happen. */
  | { readonly kind: 've'; readonly gpa: number; readonly exitReason: number }
  /** The #VE area was still valid, so the module injected #DF instead: the guest is dead. */
  | { readonly kind: 'double-fault'; readonly gpa: number }
  /**
   * GPAW 48 and a GPA with bits between the shared bit and MAX_PA set: the module turns the violation into a #PF
   * with the reserved-bit flag; nothing is accessed and there is no TD exit (reference §7.1 step 1).
   */
  | { readonly kind: 'page-fault'; readonly gpa: number; readonly reservedBit: true };

/**
 * One guest load or store within a 4K page. Private MAPPED pages are read and written; a PENDING page raises #VE
 * (or exits with EEQ PENDING_EPT_VIOLATION when SEPT_VE_DISABLE); anything else exits to the VMM (EEQ NONE) and
 * the access is retried after the VMM resolves it. Shared GPAs go through the VMM's shared EPT.
 * Source: intel/tdx-module 1.5.01 td_ept_violation.c (reference tdx-module.md §7).
 */
export async function guestAccessPage(
  m: ModuleState,
  runtime: VcpuRuntime,
  td: TdControl,
  vcpu: VcpuState,
  gpa: number,
  length: number,
  write: Uint8Array | undefined,
): Promise<GuestAccessResult> {
  vcpu.stuckExits = 0;
  if (gpa >= 2 * sharedBit(td.gpaw)) return { kind: 'page-fault', gpa, reservedBit: true };
  for (;;) {
    const frame = toPrivateGpa(gpa, td.gpaw);
    const page = frame - (frame % 4096);
    let hpa: number | undefined;
    if (isSharedGpa(gpa, td.gpaw)) {
      hpa = m.sharedEptOf(td.tdr).lookup(page);
      if (hpa === undefined) {
        await exitFor(m, runtime, td, vcpu, accessExit(gpa, write !== undefined, EeqType.NONE), undefined);
        continue;
      }
    } else {
      const walk = td.tree.walk(page, 0);
      const info = septStateInfo(walk.state);
      if (info.leaf && SeptStateGroup.guestAccessibleLeaf.has(walk.state)) {
        hpa = (walk.table.hpa[walk.index] as number) + (page % levelSpan(walk.level));
      } else if (info.leaf && SeptStateGroup.pendingAcceptable.has(walk.state)) {
        if (!td.pendingVeDisable) {
          if (vcpu.veInfo !== undefined) return { kind: 'double-fault', gpa };
          vcpu.veInfo = { exitReason: VmExitReason.EPT_VIOLATION, gpa };
          return { kind: 've', gpa, exitReason: VmExitReason.EPT_VIOLATION };
        }
        await exitFor(
          m,
          runtime,
          td,
          vcpu,
          accessExit(gpa, write !== undefined, EeqType.PENDING_EPT_VIOLATION),
          gpa,
        );
        continue;
      } else {
        await exitFor(m, runtime, td, vcpu, accessExit(gpa, write !== undefined, EeqType.NONE), gpa);
        continue;
      }
    }
    const at = hpa + (frame % 4096);
    vcpu.rip++;
    if (isSharedGpa(gpa, td.gpaw) && !hostOwned(m, hpa)) {
      // A shared (host-key) access to a page a TD owns never sees or changes the TD's plaintext: reads give zeros and
      // writes are dropped, as for the host's own accesses (hardware reads zeros for a TD-owned line; a write would
      // poison it, which the model does not carry further).
      if (write !== undefined) return { kind: 'ok', data: write };
      return { kind: 'ok', data: new Uint8Array(length) };
    }
    if (write !== undefined) {
      m.memory.write(at, write);
      return { kind: 'ok', data: write };
    }
    return { kind: 'ok', data: m.memory.read(at, length) };
  }
}

async function exitFor(
  m: ModuleState,
  runtime: VcpuRuntime,
  td: TdControl,
  vcpu: VcpuState,
  regs: Gprs,
  privateGpa: number | undefined,
): Promise<void> {
  if (++vcpu.stuckExits > m.config.guestStuckLimit) {
    throw new TdxSimError(
      'GUEST_STUCK',
      `vCPU ${vcpu.index}: ${m.config.guestStuckLimit} EPT-violation exits in a row for one access; the VMM never resolves it`,
    );
  }
  // A kick can take the vCPU out of guest mode between its re-entry and this instruction's next try: the instruction
  // runs again only once the vCPU is back in guest mode.
  if (vcpu.run !== 'in-guest') await runtime.whenRunning(vcpu);
  await runtime.exit(td, vcpu, regs, 'EPT violation', privateGpa);
}

/** Whether host page `hpa` belongs to the host (PAMT type NDA), not to a TD. */
function hostOwned(m: ModuleState, hpa: number): boolean {
  const { level, base } = m.pamt.leafOf(hpa);
  return m.pamt.getType(base, level) === PamtPageType.NDA;
}
