/**
 * The explorer against careless and hostile inputs: a backend whose view throws or is not a view, a scenario that
 * throws before its first yield point, malformed schedules and options, a stale schedule, seeds past 2^32, and a
 * report that says when its shrinking budget ran out.
 */
import { buildTd, checkVmmView, TdxModule, type VmmFactory } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  buggyVmm,
  concurrentLazyAccepts,
  type ExploreContext,
  exploreSchedules,
  faultRacingZap,
  formatExploreFailure,
  MirrorVmm,
  replaySchedule,
  scheduleSeed,
  TestkitError,
} from '../src/index.js';

const TDMR = { base: 2 ** 34, size: 2 ** 30 } as const;
const lockless = buggyVmm('lockless-zap');
if (lockless === undefined) throw new Error('missing catalogue entry');

/** A correct backend whose view is replaced by `view`. */
const withView =
  (view: () => unknown): VmmFactory =>
  async (module, build) => {
    const vmm = await MirrorVmm.create(module, { mmuLock: true }, build);
    (vmm as { view: unknown }).view = view;
    return { vmm, td: vmm.td, run: () => vmm.run() };
  };

describe("the backend's view is untrusted", () => {
  it.each([
    [
      'a view() that throws',
      () => {
        throw new Error('backend view exploded');
      },
      /could not be read: backend view exploded/,
    ],
    [
      'privateMappings() that throws',
      () => ({
        privateMappings: () => {
          throw new Error('boom');
        },
        sharedMappings: () => [],
      }),
      /private view cannot be read: privateMappings\(\) threw boom/,
    ],
    [
      'a view that is null',
      () => null,
      /private view cannot be read: the view null has no privateMappings method/,
    ],
    [
      'a non-iterable privateMappings()',
      () => ({ privateMappings: () => 5, sharedMappings: () => [] }),
      /privateMappings\(\) returned 5, not an iterable/,
    ],
    [
      'a null entry',
      () => ({ privateMappings: () => [null], sharedMappings: () => [] }),
      /malformed or repeated entry: null/,
    ],
  ])('%s: a view failure with a schedule, the exploration kept', async (_what, view, message) => {
    const result = await exploreSchedules({
      scenario: concurrentLazyAccepts(withView(view)),
      schedules: 3,
      shrink: false,
    });
    expect(result.failure?.kind).toBe('view');
    expect(result.failure?.message).toMatch(message);
    expect(result.failure?.schedule).toMatch(/^v1:/);
  });

  it('checkVmmView reports a view that is not one; it refuses a bad limit (the caller’s) with a typed error', async () => {
    const module = new TdxModule({ tdmr: TDMR });
    const td = await buildTd(module, {});
    expect(checkVmmView(module, td.tdr, null as never).map((m) => m.message)).toEqual([
      "the backend's private view cannot be read: the view null has no privateMappings method",
      "the backend's shared view cannot be read: the view null has no sharedMappings method",
    ]);
    const one = { privateMappings: () => [{ gpa: 0, level: 0 as const }], sharedMappings: () => [] };
    expect(checkVmmView(module, td.tdr, one, { limit: 1 })).toHaveLength(1);
    for (const limit of [-1, 0, 1.5])
      expect(() => checkVmmView(module, td.tdr, one, { limit })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', argument: 'limit' }),
      );
    // A GPA past 2^52 is a malformed entry, not a crash of the checker.
    expect(
      checkVmmView(module, td.tdr, {
        privateMappings: () => [{ gpa: 2 ** 52, level: 0 }],
        sharedMappings: () => [],
      })[0]?.message,
    ).toMatch(/malformed/);
  });
});

describe('a scenario that fails before its first yield point', () => {
  it('reports its own error, not "never reached a yield point"', async () => {
    const result = await exploreSchedules({
      schedules: 5,
      scenario: async () => {
        throw new Error('my scenario bug: undefined is not a function');
      },
    });
    expect(result.failure).toMatchObject({
      kind: 'threw',
      message: 'my scenario bug: undefined is not a function',
    });
    const tooSmall = await exploreSchedules({
      schedules: 5,
      scenario: async (ctx: ExploreContext) => {
        const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 20 } }, ctx.services);
        const td = await buildTd(module, { vcpus: 64 });
        return { module, tdr: td.tdr };
      },
    });
    expect(tooSmall.failure?.kind).toBe('threw');
    expect(tooSmall.failure?.message).not.toMatch(/never reached a yield point/);
  });
});

describe('malformed schedules and options', () => {
  const scenario = faultRacingZap(lockless.factory());

  it.each([
    [{ decisions: [Number.NaN] }],
    [{ decisions: [1.5] }],
    [{ decisions: [-3, -3] }],
    [5],
    [{ decisions: 'ab' }],
  ])('replaySchedule of %j: INVALID_ARGUMENT naming schedule, before anything runs', async (schedule) => {
    await expect(replaySchedule({ scenario, schedule: schedule as never })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      argument: 'schedule',
    });
  });

  it.each([
    [{ shrink: { maxRuns: 'x' } }, 'shrink.maxRuns'],
    [{ shrink: { maxRuns: -1 } }, 'shrink.maxRuns'],
    [{ shrink: { runs: 3 } }, 'shrink.runs'],
    [{ shrink: 'yes' }, 'shrink'],
    [{ replayCommand: 5 }, 'replayCommand'],
    [{ onProgress: 'x' }, 'onProgress'],
  ])('%j: INVALID_OPTION naming %s before the exploration runs', async (options, argument) => {
    let ran = false;
    const watched = async (ctx: ExploreContext) => {
      ran = true;
      return scenario(ctx);
    };
    await expect(
      exploreSchedules({ scenario: watched, schedules: 50, ...(options as object) }),
    ).rejects.toSatisfy(
      (e: unknown) => e instanceof TestkitError && e.code === 'INVALID_OPTION' && e.argument === argument,
    );
    expect(ran).toBe(false);
  });
});

describe('stale schedules', () => {
  const scenario = faultRacingZap(lockless.factory());

  it('the shrunk schedule carries its checksum and replays without divergence; the same decisions on another scenario diverge', async () => {
    const result = await exploreSchedules({ scenario, scheduler: 'random', schedules: 200, seed: 1 });
    const schedule = result.failure?.schedule ?? '';
    expect(schedule).toMatch(/^v1:[0-9.*]*@[0-9a-f]{8}$/);
    const faithful = await replaySchedule({ scenario, schedule });
    expect(faithful.divergence).toBeUndefined();
    expect(faithful.schedule).toBe(schedule);
    // "The code changed": the same schedule replayed on a backend that interleaves otherwise.
    const fixed = buggyVmm('lockless-zap');
    const changed: VmmFactory = async (module, build) => {
      const vmm = await (fixed as NonNullable<typeof fixed>).createFixed(module, build);
      return { vmm, td: vmm.td, run: () => vmm.run() };
    };
    const stale = await replaySchedule({ scenario: faultRacingZap(changed), schedule });
    expect(stale.divergence).toMatch(/interleaved differently from the recording/);
    // An old string (no checksum) that does not fit says so too.
    const old = await replaySchedule({ scenario, schedule: 'v1:9.9.9' });
    expect(old.divergence).toMatch(/3 decisions named a position past the flows waiting/);
  });
});

describe('seeds', () => {
  it('every bit of the seed counts: 1 and 2^32 + 1 explore differently; seeds below 2^32 keep their schedules', async () => {
    expect(scheduleSeed(1, 0)).not.toBe(scheduleSeed(2 ** 32 + 1, 0));
    expect(scheduleSeed(-1, 0)).not.toBe(scheduleSeed(2 ** 32 - 1, 0));
    // The formula of seeds in [0, 2^32), unchanged.
    expect(scheduleSeed(7, 3)).toBe((7 ^ Math.imul(4, 0x9e3779b1)) >>> 0);
    const explore = (seed: number) =>
      exploreSchedules({
        scenario: faultRacingZap(withView(() => undefined)),
        scheduler: 'random',
        schedules: 20,
        seed,
      });
    const [a, b] = [await explore(1), await explore(2 ** 32 + 1)];
    expect(b.steps === a.steps && b.distinctInterleavings === a.distinctInterleavings).toBe(false);
  });
});

describe('the report of a long PCT failure', () => {
  /**
   * Thread A polls 300 times; thread B sets a flag once. The property fails when B ran only after A's 100th poll: the
   * minimal schedule is one long run of "A ahead of B", `1*100`, that element-wise shrinking cuts slowly.
   */
  const scenario = async (ctx: ExploreContext) => {
    const module = new TdxModule({ tdmr: TDMR }, ctx.services);
    const td = await buildTd(module, {});
    let polls = 0;
    let seenAt = -1;
    await Promise.all([
      ctx.spawn('A', async () => {
        for (let i = 0; i < 300; i++) {
          polls++;
          await module.yieldAt({ flow: 'test', step: 'poll', tdr: td.tdr });
        }
      }),
      ctx.spawn('B', async () => {
        await module.yieldAt({ flow: 'test', step: 'set', tdr: td.tdr });
        seenAt = polls;
      }),
    ]);
    return { module, tdr: td.tdr, seenAt: () => seenAt };
  };
  const property = ({ td }: { td: { seenAt: () => number } }) =>
    td.seenAt() <= 100 || `B ran after ${td.seenAt()} polls`;

  it('a run of one repeated decision is cut to its shortest failing length: the minimum within a small budget', async () => {
    const result = await exploreSchedules({
      scenario,
      property,
      scheduler: 'pct',
      schedules: 50,
      seed: 3,
      shrink: { maxRuns: 50 },
    });
    const failure = result.failure;
    if (failure === undefined) throw new Error('no failure');
    // Found with A ahead of B 163 times; 99 more polls of A after the first choice are what it takes.
    expect(failure.found).toMatch(/^v1:0\.1\*163@/);
    expect(failure.schedule).toMatch(/^v1:0\.1\*99@/);
    expect(failure.shrinkRuns).toBe(50);
  });

  it('a report whose budget ran out says so, and caps its list of choices', async () => {
    const result = await exploreSchedules({
      scenario,
      property,
      scheduler: 'pct',
      schedules: 50,
      seed: 3,
      shrink: { maxRuns: 2 },
    });
    const failure = result.failure;
    if (failure === undefined) throw new Error('no failure');
    expect(failure.shrinkComplete).toBe(false);
    const report = formatExploreFailure(result, failure);
    expect(report).toContain('shrinking stopped after 2 replays, its budget spent: it may not be minimal');
    expect(report).not.toContain('minimal schedule');
    expect(failure.choices.length).toBeGreaterThan(30);
    expect(report).toContain(`… and ${failure.choices.length - 30} more`);
  });
});
