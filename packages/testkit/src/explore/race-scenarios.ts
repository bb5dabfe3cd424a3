import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import { sharedBit, TdxModule, TdxSimError, TdxStatus, type VmmFactory } from '@tdxsim/tdx-module';
import type { ExploredTd, ExploreScenario } from './explore-types.js';

const PAGE = 4096;
/** The TDMR every race scenario's module manages: 1 GiB at 16 GiB. */
const TDMR = { base: 2 ** 34, size: 2 ** 30 } as const;

/** What a race scenario returns: the TD to check, with what each racing side saw. */
export interface RaceOutcome extends ExploredTd {
  /** One line per racing action: what it returned (or threw). */
  readonly outcomes: readonly string[];
}

function describe(value: unknown): string {
  if (typeof value === 'bigint') return `0x${value.toString(16)}`;
  if (TdxSimError.is(value)) return `threw ${value.code}`;
  if (value instanceof Error) return `threw ${value.message}`;
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
}

/**
 * A fault racing a zap on one page, from a guest's two vCPUs: vCPU 0 has accepted private page P and reads it twice,
 * while vCPU 1 converts P to shared (TDG.VP.VMCALL<MapGPA>, so the backend zaps P). The guest is racing itself (an
 * untrusted guest may); a backend must stay consistent whatever the guest does. A read that faults more than six
 * times in a row gives up (`guestStuckLimit` 6, before zero-step mitigation would list the GPA), so every run ends.
 * `backend` builds the TD and the VMM on the module it is given (a {@link VmmFactory}).
 */
export function faultRacingZap(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  return async (ctx) => {
    const module = new TdxModule({ tdmr: TDMR, guestStuckLimit: 6 }, ctx.services);
    const hosted = await backend(module, { gpaw: 48, vcpus: 2 });
    // A host thread that ends (the VMM stopped a vCPU) is seen by the guest as VCPU_NOT_RESUMED.
    for (const thread of hosted.run()) thread.catch(() => {});
    const td = ctx.watch({ module, tdr: hosted.td.tdr, vmm: hosted.vmm });
    const P = 0x10_0000;
    const accepted = await tdgAccept(hosted.td.guest(0), P, 0);
    if (accepted !== TdxStatus.SUCCESS) throw new Error(`set-up: ACCEPT of P failed: ${describe(accepted)}`);
    const settle = (work: Promise<unknown>) => work.then(describe, describe);
    const outcomes = await Promise.all([
      settle(
        (async () => {
          const reads = [];
          for (let i = 0; i < 2; i++) reads.push((await hosted.td.guest(0).read(P, 8)).kind);
          return reads.join(',');
        })(),
      ),
      settle(vmcallMapGpa(hosted.td.guest(1), BigInt(sharedBit(48) + P), BigInt(PAGE)).then((r) => r.r10)),
    ]);
    return { ...td, outcomes };
  };
}
