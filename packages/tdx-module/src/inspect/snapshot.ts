import { createHash } from 'node:crypto';
import { assertSameCopy } from '../package-copy.js';
import type { TdxModule } from '../tdx-module.js';
import { assertModule } from './assert-module.js';

/**
 * A canonical digest of the whole module state (PAMT, TDs, SEPT entries with their lock bits, vCPUs, shared EPTs,
 * memory contents). Two equal snapshots mean nothing observable changed.
 */
export function snapshotState(module: TdxModule): string {
  assertSameCopy('module', module);
  assertModule(module);
  const m = module.state;
  const hash = createHash('sha256');
  const put = (...values: unknown[]): void => {
    hash.update(`${values.map(String).join(',')};`);
  };
  for (const e of m.pamt.usedEntries()) put('pamt', e.hpa, e.level, e.type, e.owner, e.bepoch, e.lock);
  for (const td of [...m.tds.values()].sort((a, b) => a.tdr - b.tdr)) {
    put('td', td.tdr, td.hkid, td.lifecycle, td.opState, td.opStateLock, td.fatal, td.childCount, td.epoch);
    put(
      'td2',
      td.epochRefcount.join('/'),
      td.epochLock.word,
      td.septTreeLock.word,
      td.tdcx.join('/'),
      td.gpaw,
      td.pwl,
    );
    for (const v of td.vcpus.values()) {
      put(
        'vcpu',
        v.tdvpr,
        v.initialized,
        v.run,
        v.epoch,
        v.rip,
        v.zeroStepCount,
        v.zeroStepGpas.join('/'),
        v.tdcx.join('/'),
      );
    }
    if (td.sept !== undefined) {
      for (const { table, baseGpa } of td.sept.tables()) {
        for (let i = 0; i < 512; i++) {
          if (table.nonFree === 0 && table.lock[i] === 0) continue;
          put(
            'e',
            baseGpa,
            table.level,
            i,
            table.state[i],
            table.hpa[i],
            table.lock[i],
            table.acceptCounter[i],
          );
        }
      }
    }
    const shared = m.sharedEpts.get(td.tdr);
    if (shared !== undefined) for (const [frame, hpa] of shared.entries()) put('s', frame, hpa);
  }
  for (const [hpa, bytes] of m.memory.pages()) {
    if (bytes.some((byte) => byte !== 0)) {
      put('mem', hpa);
      hash.update(bytes);
    }
  }
  return hash.digest('hex');
}
