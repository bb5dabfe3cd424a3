import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { afterYield, enterTd } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import type { Gprs } from '../registers.js';

/**
 * TDH.MEM.TRACK: RCX = TDR. Takes the epoch lock exclusive and advances the TD epoch, which needs every vCPU that
 * entered in the previous epoch to have exited.
 * Source: intel/tdx-module 1.5.01 tdh_mem_track.c (reference tdx-module.md §5.6, §8).
 */
export function memTrack(
  m: ModuleState,
  regs: readonly bigint[],
  _out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const td = enterTd(m, SeamcallLeaf.MEM_TRACK, regs, OperandId.RCX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  if (!td.epochLock.tryExclusive()) return withDetail(TdxStatus.OPERAND_BUSY, OperandId.TD_EPOCH);
  held.addPlain(td.epochLock, true);
  if (td.epochRefcount[1 - (td.epoch & 1)] !== 0) return TdxStatus.PREVIOUS_TLB_EPOCH_BUSY;
  return afterYield(m, 'TDH.MEM.TRACK', td.tdr, undefined, () => {
    td.epoch += 1;
    return TdxStatus.SUCCESS;
  });
}
