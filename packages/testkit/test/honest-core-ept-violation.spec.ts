/**
 * The honest core's EPT-violation exit, SEAMCALL by SEAMCALL, in the core of a safety case's own scripted VMM (the
 * trusted one, which reads the S-EPT once per exit): a 2M accept on a free range AUGs at 2M; a 4K exit inside a
 * PENDING 2M page demotes it; a 2M AUG that fails falls back to 4K from the S-EPT as it is after that attempt.
 */
import { GuestIds, guestModule, type TdGuest } from '@tdxsim/guest';
import {
  type BuiltTd,
  composeTd,
  EeqType,
  ensureSeptTables,
  type HostSeamcalls,
  makeGprs,
  type SeamcallResult,
  TdxStatus,
} from '@tdxsim/tdx-module';
import { expect, test } from 'vitest';
import { type HonestCore, trustedHonestCore } from '../src/backends/honest-core.js';
import { HONEST_STEP, type ScriptedVmm, scriptedVmm } from '../src/index.js';

const GIB = 2 ** 30;
const MIB2 = 2 ** 21;
const PAGE = 4096;

/** The SEAMCALLs the core makes through its TD's host, each as `name@level` (`name` when it has no level). */
type Calls = string[];

/**
 * A booted TD and a trusted core over it whose host records every SEAMCALL; `pageAug` can be replaced to make an
 * AUG fail or to race it.
 */
async function setUp(
  augHook?: (
    real: HostSeamcalls,
    args: Parameters<HostSeamcalls['pageAug']>,
  ) => Promise<SeamcallResult> | undefined,
) {
  const composed = await composeTd<TdGuest>({
    vmm: scriptedVmm({ steps: [HONEST_STEP], order: 'cycle' }),
    guest: { module: guestModule({ memoryBytes: 2 * GIB, policy: 'strict' }), id: GuestIds.Guest },
    sim: { module: { tdmr: { base: 2 ** 36, size: 4 * GIB } } },
  });
  const { module } = composed;
  const td = (composed.hosted.vmm as ScriptedVmm).core.td;
  const calls: Calls = [];
  const real = td.host;
  const host = new Proxy(real, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const level = name === 'track' ? undefined : args[2];
        calls.push(level === undefined ? String(name) : `${String(name)}@${String(level)}`);
        if (name === 'pageAug' && augHook !== undefined) {
          const hooked = augHook(real, args as Parameters<HostSeamcalls['pageAug']>);
          if (hooked !== undefined) return hooked;
        }
        return value.apply(target, args);
      };
    },
  });
  const recorded: BuiltTd = { ...td, host, guest: td.guest.bind(td), run: td.run.bind(td) };
  const core = trustedHonestCore(module, recorded);
  return { module, td: recorded, core, calls };
}

/**
 * An EPT-violation exit on private `gpa`: an ACCEPT exit at `acceptLevel`, or a plain one; `highBits` are ORed into
 * its EEQ (bits above those the core reads).
 */
const exit = (core: HonestCore, gpa: number, acceptLevel?: 0 | 1, highBits = 0n): Promise<void> =>
  core.onEptViolation(
    makeGprs({
      r8: BigInt(gpa),
      rdx:
        highBits | (acceptLevel === undefined ? 0n : BigInt(EeqType.ACCEPT) | (BigInt(acceptLevel) << 32n)),
    }),
  );

/** A private GPA the booted guest has not touched: 5 pages into the 2M range 3 of its second GiB. */
const GPA = GIB + 3 * MIB2 + 5 * PAGE;
const BASE_2M = GPA - (GPA % MIB2);

test('a 2M accept exit on a free range: the missing tables, then one AUG at 2M', async () => {
  const { module, td, core, calls } = await setUp();
  expect(module.privatePage(td.tdr, GPA)).toMatchObject({ state: 'FREE', level: 3 });
  await exit(core, GPA, 1);
  expect(calls).toEqual(['septAdd@3', 'septAdd@2', 'pageAug@1']);
  // AUGed, not yet accepted by the guest.
  expect(module.privatePage(td.tdr, GPA)).toMatchObject({ state: 'PENDING', level: 1 });
  expect(module.privatePage(td.tdr, BASE_2M + MIB2 - PAGE)).toMatchObject({ state: 'PENDING', level: 1 });
});

test('a 4K exit inside a PENDING 2M page: BLOCK, TRACK, DEMOTE; the page stays PENDING at 4K', async () => {
  const { module, td, core, calls } = await setUp();
  await exit(core, GPA, 1);
  calls.length = 0;
  await exit(core, GPA + 2 * PAGE, 0);
  expect(calls).toEqual(['rangeBlock@1', 'track', 'pageDemote@1']);
  expect(module.privatePage(td.tdr, GPA + 2 * PAGE)).toMatchObject({ state: 'PENDING', level: 0 });
  expect(module.privatePage(td.tdr, BASE_2M)).toMatchObject({ state: 'PENDING', level: 0 });
  // A plain EPT-violation exit (not an ACCEPT) inside a PENDING 2M page is split the same way.
  await exit(core, GPA + MIB2, 1);
  calls.length = 0;
  await exit(core, GPA + MIB2);
  expect(calls).toEqual(['rangeBlock@1', 'track', 'pageDemote@1']);
  expect(module.privatePage(td.tdr, GPA + MIB2)).toMatchObject({ state: 'PENDING', level: 0 });
});

test('a 2M accept exit whose 2M AUG fails: the 4K table, then one AUG at 4K', async () => {
  // The module refuses the 2M AUG: it is handed a host page that is not 2M-aligned.
  const failed: bigint[] = [];
  const { module, td, core, calls } = await setUp((real, [tdr, gpa, level, hpa]) =>
    level === 1
      ? real.pageAug(tdr, gpa, level, hpa + PAGE).then((result) => {
          failed.push(result.status);
          return result;
        })
      : undefined,
  );
  await exit(core, GPA, 1);
  expect(calls).toEqual(['septAdd@3', 'septAdd@2', 'pageAug@1', 'septAdd@1', 'pageAug@0']);
  expect(failed).toHaveLength(1);
  expect(failed[0]).not.toBe(TdxStatus.SUCCESS);
  expect(module.privatePage(td.tdr, GPA)).toMatchObject({ state: 'PENDING', level: 0 });
  expect(module.privatePage(td.tdr, GPA + PAGE)).toMatchObject({ state: 'FREE', level: 0 });
});

test('a 2M AUG that fails because another vCPU AUGed the page meanwhile: no second AUG of that page', async () => {
  // The other vCPU's exit, run while the core awaits its 2M AUG: the 4K table and the page at 4K, through the TD's
  // own host (not recorded). The core's 2M AUG then fails in the module: the entry is a table now.
  let raced = false;
  const { module, td, core, calls } = await setUp((real, args) => {
    if (args[2] !== 1 || raced) return undefined;
    raced = true;
    return (async () => {
      const [tdr] = args;
      expect(await ensureSeptTables(module, real, td.allocator, tdr, GPA, 0, td.pwl)).toBe(TdxStatus.SUCCESS);
      expect((await real.pageAug(tdr, GPA, 0, td.allocator.alloc4k())).status).toBe(TdxStatus.SUCCESS);
      return real.pageAug(...args);
    })();
  });
  await exit(core, GPA, 1);
  expect(raced).toBe(true);
  // The page is read again after the failed 2M attempt: it is PENDING at 4K, so there is nothing left to AUG.
  expect(calls).toEqual(['septAdd@3', 'septAdd@2', 'pageAug@1']);
  expect(module.privatePage(td.tdr, GPA)).toMatchObject({ state: 'PENDING', level: 0 });
});

test.each([
  ['bit 52 (the EEQ still a number exactly)', 1n << 52n],
  ['bit 53 (read as a BigInt)', 1n << 53n],
  ['bit 63 (read as a BigInt)', 1n << 63n],
])('an EEQ with %s set: the same type and level as without it', async (_, highBits) => {
  const { module, td, core, calls } = await setUp();
  await exit(core, GPA, 1, highBits);
  expect(calls).toEqual(['septAdd@3', 'septAdd@2', 'pageAug@1']);
  calls.length = 0;
  // A plain exit (type NONE, level bits set): no 2M attempt, the page AUGed at 4K.
  await exit(core, GPA + GIB / 2, undefined, highBits | (1n << 32n));
  expect(calls).toEqual(['septAdd@1', 'pageAug@0']);
  expect(module.privatePage(td.tdr, GPA + GIB / 2)).toMatchObject({ state: 'PENDING', level: 0 });
});
