import { TdGuest } from '@tdxsim/guest';
import { assertInvariants, checkVmmView, SeededRng, TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { HypervVmm } from '../src/index.js';

const MIB = 2 ** 20;
const PAGE = 4096;

describe('guest × HypervVmm: seeded churn of conversions', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: 40 random conversions, invariants and ledger check after every step`, async () => {
      const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 32 } });
      const vmm = await HypervVmm.create(module, { chunkPages: 32, seed }, { gpaw: 48, vcpus: 2 });
      vmm.run();
      const guest = await TdGuest.boot(vmm.td.guest(0), { memoryBytes: 32 * MIB, policy: 'linux' });
      const rng = new SeededRng(seed);
      let failures = 0;
      for (let step = 0; step < 40; step++) {
        const pages = rng.int(1, 1024);
        const start = rng.int(0, 8192 - pages) * PAGE;
        const result = rng.chance(0.5)
          ? await guest.setShared(start, pages * PAGE)
          : await guest.setPrivate(start, pages * PAGE);
        if (result.kind === 'failed') failures++;
        assertInvariants(module);
        expect(guest.check(module, vmm.td.tdr)).toEqual([]);
        // Its own record of what it mapped equals the S-EPT and the shared EPT.
        expect(checkVmmView(module, vmm.td.tdr, vmm.view())).toEqual([]);
      }
      // An honest backend never makes the guest fail beyond its documented budget.
      expect(failures).toBe(0);
    });
  }
});
