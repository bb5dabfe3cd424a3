import { describe, expect } from 'vitest';
import { test } from '../../../test/property-test.js';
import { checkGuestSafety, FUZZ_CHECK_EVERY, fuzzCase, runFuzzCase, scriptedVmm } from '../src/index.js';

// A scripted safety case (every fuzz case) runs on a TD restored from a checkpoint of one built TD; the same case as a
// container module (`scriptedVmm`) builds its TD from scratch. Both must judge every case alike.
describe('fuzz cases on a restored TD', () => {
  test.prop([fuzzCase(['strict', 'linux', 'edk2', 'coconutSvsm'])], { numRuns: 150 })(
    'report exactly what the same case reports on a freshly built TD',
    async (fuzz) => {
      const restored = await runFuzzCase(fuzz);
      const fresh = await checkGuestSafety({
        vmm: scriptedVmm(fuzz.behaviour),
        guest: fuzz.guest,
        workload: fuzz.workload,
        gpaw: fuzz.gpaw,
        checkEvery: FUZZ_CHECK_EVERY,
      });
      expect(restored).toEqual(fresh);
      // And a case run again (a restore of the same checkpoint) is unchanged by the cases run before it.
      expect(await runFuzzCase(fuzz)).toEqual(restored);
    },
  );
});
