import { GuestError, GuestIds, guestModule, type TdGuest } from '@tdxsim/guest';
import {
  type BuiltTd,
  checkInvariants,
  composeTd,
  makeGprs,
  type TraceSink,
  VMM_OWNED_INVARIANT_RULES,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  HONEST_STEP,
  HonestCore,
  hostileVmm,
  hostileVmms,
  type ScriptedVmm,
  scriptedVmm,
  type VmmBehaviour,
} from '../src/index.js';

const GIB = 2 ** 30;
const PAGE = 4096;

/** Swallows a guest's refusal of a range it quarantined; any other error is thrown again. */
function quarantined(error: unknown): void {
  if (!(error instanceof GuestError && error.code === 'QUARANTINED')) throw error;
}

async function boot(vmm: ReturnType<typeof scriptedVmm>, memoryBytes = 2 * GIB, trace?: TraceSink) {
  const composed = await composeTd<TdGuest>({
    vmm,
    guest: { module: guestModule({ memoryBytes, policy: 'strict' }), id: GuestIds.Guest },
    sim: { module: { tdmr: { base: 2 ** 36, size: 4 * GIB } }, ...(trace === undefined ? {} : { trace }) },
  });
  return { ...composed, scripted: composed.hosted.vmm as ScriptedVmm, crossings: trace };
}

describe('the hostile catalog', () => {
  it('has unique, short kebab-case names and says what a safe guest must do', () => {
    const names = hostileVmms.map((h) => h.name);
    expect(new Set(names).size).toBe(names.length);
    for (const hostile of hostileVmms) {
      expect(hostile.name).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(hostile.name.length).toBeLessThanOrEqual(28);
      expect(hostile.description.length).toBeGreaterThan(10);
      expect(hostile.safeGuestMust.length).toBeGreaterThan(10);
    }
  });

  // Cheap by design: a sane guest ends a 1 GiB conversion against any of them in a few thousand TD exits (AUG at 2M
  // on 2M accepts), not the 262,144 of a 4K-only backend. Counted, not timed: no wall clock in the tests.
  it.each(hostileVmms.map((h) => [h.name, h] as const))(
    '%s: the strict guest converts 1 GiB to shared and back in a few thousand TD exits',
    async (_name, hostile) => {
      let exits = 0;
      const counter: TraceSink = {
        enabled: true,
        record: (event) => {
          if (event.kind === 'td-exit') exits++;
        },
      };
      const { guest } = await boot(hostile.module({ seed: 3 }), 2 * GIB, counter);
      const toShared = await guest.setShared(GIB, GIB).catch((error: unknown) => error);
      const back = await guest.setPrivate(GIB, GIB).catch((error: unknown) => error);
      expect([toShared, back].every((r) => typeof r === 'object' && r !== null)).toBe(true);
      expect(exits).toBeLessThan(20_000);
    },
  );
});

describe('the honest core under the scripted backend', () => {
  it('converts 1 GiB to shared and back honestly: ledger = module, invariants hold, 2M AUGs only', async () => {
    const { guest, module, td } = await boot(
      scriptedVmm({ steps: [{ convert: 'all', status: 'auto', r11: 'next' }], order: 'cycle' }),
    );
    expect(await guest.setShared(GIB, GIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(await guest.setPrivate(GIB, GIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(guest.check(module, td.tdr)).toEqual([]);
    expect(checkInvariants(module)).toEqual([]);
    expect(module.privatePage(td.tdr, GIB + 5 * PAGE)).toMatchObject({ state: 'MAPPED', level: 1 });
  });

  it('honest chunks answer RETRY with the next GPA: a 64-page request in 8 calls of 8 pages', async () => {
    const { guest, module, td } = await boot(
      scriptedVmm({ steps: [{ convert: { upTo: 8 }, status: 'auto', r11: 'next' }], order: 'cycle' }),
    );
    expect(await guest.setShared(0, 64 * PAGE)).toMatchObject({ kind: 'ok', mapGpaCalls: 8 });
    expect(module.sharedEpt(td.tdr).size).toBe(64);
  });
});

describe("a user's HonestCore", () => {
  it('checks the TD it was given before it AUGs on an EPT-violation exit: 9 paging levels are refused', async () => {
    const { module, td } = await boot(scriptedVmm({ steps: [HONEST_STEP], order: 'cycle' }));
    // The constructor checks the TD's shape; its paging levels, host and allocator are checked where they are used.
    const core = new HonestCore(module, { ...td, run: td.run.bind(td), pwl: 9 } as BuiltTd);
    const gpa = 3 * GIB;
    expect(module.privatePage(td.tdr, gpa).state).toBe('FREE');
    await expect(core.onEptViolation(makeGprs({ r8: BigInt(gpa) }))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });
});

describe('what each hostile side effect does', () => {
  it('re-aug-accepted: an accepted page comes back PENDING and the guest reads it as tampered', async () => {
    const { guest, module, td, scripted } = await boot(hostileVmm('re-aug-accepted')?.module() ?? fail());
    expect(await guest.write(0, new Uint8Array([1, 2, 3]))).toMatchObject({ kind: 'ok' });
    expect(await guest.setShared(8 * PAGE, PAGE)).toMatchObject({ kind: 'ok' });
    expect(module.privatePage(td.tdr, 0).state).toBe('PENDING');
    expect(scripted.record.behindTheGuestsBack.has(0)).toBe(true);
    expect(await guest.read(0, 3)).toEqual({ kind: 'fault', reason: 'tampered', gpa: 0 });
    expect(guest.ledger.stateOf(0)).toBe('quarantined');
  });

  it.each([
    ['shared-page-aliased', 'shared-ept-aliasing'],
    ['shared-maps-td-page', 'shared-ept-td-page'],
    ['shared-keeps-private', 'shared-ept-private-alias'],
  ] as const)('%s breaks the VMM-owned rule %s and nothing the module owns', async (name, rule) => {
    const { guest, module } = await boot(hostileVmm(name)?.module() ?? fail());
    await guest.write(0, new Uint8Array([7]));
    expect(await guest.setPrivate(8 * PAGE, 2 * PAGE)).toMatchObject({ kind: 'ok' }); // accepted: private leaves
    expect(await guest.setShared(8 * PAGE, 2 * PAGE)).toMatchObject({ kind: 'ok' });
    const broken = checkInvariants(module).map((v) => v.rule);
    expect(broken).toContain(rule);
    expect(broken.filter((r) => !VMM_OWNED_INVARIANT_RULES.has(r))).toEqual([]);
  });

  it('converts-more: the pages past the request are converted behind the guest`s back', async () => {
    const { guest, module, td, scripted } = await boot(hostileVmm('converts-more')?.module() ?? fail());
    expect(await guest.setShared(8 * PAGE, 2 * PAGE)).toMatchObject({ kind: 'ok' });
    expect(module.sharedEpt(td.tdr).lookup(10 * PAGE)).toBeDefined();
    expect([...scripted.record.behindTheGuestsBack].sort((a, b) => a - b)).toEqual([10, 11]);
  });

  it('success-without-converting: the to-shared acknowledgement is recorded as unbacked', async () => {
    const { guest, scripted } = await boot(hostileVmm('success-without-converting')?.module() ?? fail());
    expect(await guest.setShared(8 * PAGE, 2 * PAGE)).toMatchObject({ kind: 'ok' });
    expect([...scripted.record.unbackedAcks].sort((a, b) => a - b)).toEqual([8, 9]);
  });

  // A lie answered SUCCESS without converting, then an honest call converting the next range, which overlaps it: the
  // acknowledgements it backs are forgotten while the record's changes are still noted, not made.
  const liesThenConverts = (): VmmBehaviour => ({
    steps: [{ convert: 'none', status: 'SUCCESS', r11: 'next' }, HONEST_STEP],
    order: 'cycle',
  });
  it.each([
    ...['success-without-converting', 'converts-less', 'converts-more', 're-aug-accepted'].map(
      (name) => [name, () => hostileVmm(name)?.module() ?? fail(), undefined] as const,
    ),
    // Frames 8–11 and 16–18 acknowledged by lies, then 9–12 and 17–19 converted: 8 and 16 are left in the middle.
    ['lies, then converts an overlapping range', () => scriptedVmm(liesThenConverts()), [8, 16]] as const,
  ])(
    '%s: the record read at the start, in the middle or at the end holds the same, in the same order',
    async (_name, vmm, unbackedInTheMiddle) => {
      const run = async (readAt: 'start' | 'middle' | 'end') => {
        const { guest, scripted } = await boot(vmm());
        const early = readAt === 'start' ? scripted.record : undefined;
        await guest.write(0, new Uint8Array([1]));
        let middle: { unbacked: number[]; behind: number[] } | undefined;
        for (const [index, [start, pages]] of (
          [
            [8, 4],
            [16, 3],
            [9, 8],
            [0, 2],
          ] as const
        ).entries()) {
          // A range the guest quarantined is refused (it throws): the next conversion goes on.
          await guest.setShared(start * PAGE, pages * PAGE).catch(quarantined);
          await guest.setPrivate((start + 1) * PAGE, pages * PAGE).catch(quarantined);
          // After the second range: the first read of a 'middle' run, a look at live sets in a 'start' run.
          if (readAt !== 'end' && index === 1) {
            const { unbackedAcks, behindTheGuestsBack } = scripted.record;
            middle = { unbacked: [...unbackedAcks], behind: [...behindTheGuestsBack] };
          }
        }
        const record = scripted.record;
        if (early !== undefined) expect(record).toBe(early);
        return {
          calls: record.mapGpaCalls,
          unbacked: [...record.unbackedAcks],
          behind: [...record.behindTheGuestsBack],
          middle,
        };
      };
      const { middle, ...late } = await run('end');
      const { middle: inTheMiddle, ...fromTheStart } = await run('start');
      const { middle: read, ...midway } = await run('middle');
      expect(fromTheStart).toEqual(late);
      expect(midway).toEqual(late);
      expect(middle).toBeUndefined();
      expect(read).toEqual(inTheMiddle);
      if (unbackedInTheMiddle !== undefined) expect(read?.unbacked).toEqual(unbackedInTheMiddle);
      expect(late.calls).toBeGreaterThan(0);
      expect(late.unbacked.length + late.behind.length).toBeGreaterThan(0);
    },
  );

  it('inconsistent-replies: the same seed replays the same answers, another seed differs', async () => {
    const calls = async (seed: number) => {
      const { guest } = await boot(hostileVmm('inconsistent-replies')?.module({ seed }) ?? fail());
      const results = [];
      for (let i = 0; i < 6; i++) results.push(await guest.setShared((100 + 16 * i) * PAGE, 8 * PAGE));
      return JSON.stringify(results.map((r) => [r.kind, r.mapGpaCalls]));
    };
    expect(await calls(5)).toBe(await calls(5));
    const others = await Promise.all([6, 7, 8].map(calls));
    expect(others.some((other) => other !== others[0]) || others[0] !== (await calls(5))).toBe(true);
  });
});

function fail(): never {
  throw new Error('no such hostile backend');
}
