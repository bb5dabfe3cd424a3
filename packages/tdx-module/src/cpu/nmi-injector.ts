import { assertIntegerInRange, TdxSimError } from '../errors.js';
import type { TdxModule } from '../tdx-module.js';
import type { NmiDisposition } from './host-cpu.js';

/** One NMI to raise: which vCPU's host processor it reaches, and its source. */
export interface NmiScriptEntry {
  /** Index of the vCPU (in `td.tdvprs`) whose host processor the NMI reaches. Default 0. */
  readonly vcpu?: number;
  /** What raised it, e.g. `'perf'`, `'ipi'`, `'watchdog'`. */
  readonly source: string;
  /**
   * Yield points the NMI thread passes before raising it (default 1): the time that passes before it arrives, in
   * scheduling steps. The more, the later it tends to come under an explorer, and the more choices decide when.
   */
  readonly delay?: number;
}

/** An NMI that {@link injectNmis} raised, and what became of it on arrival. */
export interface RaisedNmi {
  readonly vcpu: number;
  readonly source: string;
  /** Its number on that processor (0, 1, … in arrival order). */
  readonly nmi: number;
  readonly disposition: NmiDisposition;
}

/**
 * Raises `nmis` one after the other from a thread of their own (`actor`, default `nmi`), each after `delay` yield
 * points (flow `NMI`, step `arrive`). Under an exploring scheduler the moment each NMI arrives — relative to the vCPUs'
 * entries, exits, SEAMRETs and guest instructions — is therefore a scheduling decision, recorded and replayed like any
 * other; under the run-to-completion scheduler they all arrive at once, when this is called. A rejected yield (the
 * scheduler stopped the run) rejects the returned promise with the NMIs not yet raised left out.
 */
export async function injectNmis(
  module: TdxModule,
  td: { readonly tdr: number; readonly tdvprs: readonly number[] },
  nmis: readonly NmiScriptEntry[],
  actor = 'nmi',
): Promise<RaisedNmi[]> {
  if (!Array.isArray(nmis)) throw new TdxSimError('INVALID_ARGUMENT', 'nmis must be an array', 'nmis');
  const targets = nmis.map((entry, i) => {
    const vcpu = entry.vcpu ?? 0;
    const tdvpr = td.tdvprs[vcpu];
    if (!Number.isSafeInteger(vcpu) || tdvpr === undefined)
      throw new TdxSimError(
        'INVALID_ARGUMENT',
        `nmis[${i}].vcpu: no vCPU ${String(vcpu)}`,
        `nmis[${i}].vcpu`,
      );
    if (typeof entry.source !== 'string' || entry.source.length === 0)
      throw new TdxSimError(
        'INVALID_ARGUMENT',
        `nmis[${i}].source must be a non-empty string`,
        `nmis[${i}].source`,
      );
    const delay = entry.delay ?? 1;
    assertIntegerInRange(`nmis[${i}].delay`, delay, 1, 1_000_000);
    return { vcpu, tdvpr, source: entry.source, delay };
  });
  if (typeof actor !== 'string' || actor.length === 0)
    throw new TdxSimError('INVALID_ARGUMENT', 'actor must be a non-empty string', 'actor');
  const raised: RaisedNmi[] = [];
  for (const { vcpu, tdvpr, source, delay } of targets) {
    for (let step = 0; step < delay; step++) {
      const wait = module.yieldAt({ flow: 'NMI', step: 'arrive', tdr: td.tdr, actor });
      if (wait !== undefined) await wait;
    }
    const { nmi, disposition } = module.raiseNmi(tdvpr, source);
    raised.push({ vcpu, source, nmi, disposition });
  }
  return raised;
}
