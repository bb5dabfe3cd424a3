/**
 * Issue 14: `tdxsim explore` restores each race's TD per schedule on the built-in honest backends (`VmmEntry.adopt`)
 * and builds it per schedule on the others. A cell explored either way must give the same result: outcome, schedules,
 * interleavings, steps, the failure with its shrunk schedule, trace, timeline and replay command.
 */
import { canAdopt } from '@tdxsim/testkit';
import { describe, expect, it } from 'vitest';
import { builtinCatalog } from '../src/catalog/catalog.js';
import type { VmmEntry } from '../src/catalog/vmm-catalog.js';
import { exploreCell } from '../src/explore/explore-cell.js';
import { raceCatalogue, raceCells, vmmFactory } from '../src/explore/race-catalogue.js';

const catalog = builtinCatalog();
const entry = (name: string): VmmEntry => {
  const found = catalog.vmms.find((v) => v.name === name);
  if (found === undefined) throw new Error(`no backend ${name}`);
  return found;
};

/** The same entry without its adoption: every schedule builds the TD. */
function building(vmm: VmmEntry): VmmEntry {
  const { adopt: _adopt, ...rest } = vmm;
  return rest;
}

describe('tdxsim explore on restored TDs', () => {
  it('the honest built-in backends adopt; hostile ones build per schedule', () => {
    for (const name of ['kvm', 'kvm-events', 'hyperv-512', 'hyperv-2048', 'hyperv-8192'])
      expect(canAdopt(vmmFactory(entry(name), 1)), name).toBe(true);
    for (const vmm of catalog.vmms.filter((v) => v.kind === 'hostile'))
      expect(canAdopt(vmmFactory(vmm, 1)), vmm.name).toBe(false);
  });

  it('every race on kvm, kvm-events and hyperv-512 gives the same cell, restored or built', async () => {
    const vmms = ['kvm', 'kvm-events', 'hyperv-512'].map(entry);
    for (const cell of raceCells(raceCatalogue(), vmms)) {
      const options = { scheduler: 'pct', seed: 5, schedules: 10 } as const;
      const restored = await exploreCell(cell, options);
      const built = await exploreCell({ ...cell, vmm: building(cell.vmm) }, options);
      const { wallMs: _a, ...r } = restored;
      const { wallMs: _b, ...b } = built;
      expect(r, cell.id).toEqual(b);
    }
  }, 300_000);
});
