/**
 * Issue 10 item 7 for the exploration API: every exported function and constructor of the testkit's exploration
 * (and of the scenario context it hands out) refuses malformed input with a typed TestkitError — a stable code and
 * the argument's name — before anything runs. The schedulers' and schedules' own cases are in tdx-module
 * (test/schedule/schedule-inputs.spec.ts).
 */
import { TdxModule, type VmmFactory } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  acceptRacingZap,
  concurrentLazyAccepts,
  describeChoices,
  type ExploreContext,
  exploreSchedules,
  faultRacingZap,
  formatExploreFailure,
  formatTraceEvent,
  MirrorVmm,
  pageAddContention,
  raceScenarios,
  replaySchedule,
  scheduleSeed,
  TestkitError,
  traceText,
  twoConversionsIn2m,
  twoZapsAtOnce,
  zeroStepStorm,
} from '../src/index.js';
import { exploreTest } from '../src/vitest.js';

const mirror: VmmFactory = async (module, build) => {
  const vmm = await MirrorVmm.create(module, { mmuLock: true }, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

/** What `call` threw (synchronously or as a rejection). */
async function caught(call: () => unknown): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  throw new Error('nothing thrown');
}

const factories = {
  faultRacingZap,
  acceptRacingZap,
  twoZapsAtOnce,
  concurrentLazyAccepts,
  twoConversionsIn2m,
  zeroStepStorm,
  pageAddContention,
};

describe('the exploration API refuses malformed input with a typed error naming the argument', () => {
  let ran = 0;
  const scenario = async (ctx: ExploreContext) => {
    ran++;
    return faultRacingZap(mirror)(ctx);
  };

  it.each<[string, () => unknown, string, string]>([
    ...Object.entries(factories).flatMap(([name, make]) =>
      [undefined, 5, 'kvm', {}].map(
        (backend) =>
          [`${name}(${String(backend)})`, () => make(backend as never), 'INVALID_ARGUMENT', 'backend'] as [
            string,
            () => unknown,
            string,
            string,
          ],
      ),
    ),
    [
      'a catalogue entry given no backend',
      () => raceScenarios[0]?.scenario(null as never),
      'INVALID_ARGUMENT',
      'backend',
    ],
    ['scheduleSeed(1.5, 0)', () => scheduleSeed(1.5, 0), 'INVALID_ARGUMENT', 'seed'],
    ['scheduleSeed("1", 0)', () => scheduleSeed('1' as never, 0), 'INVALID_ARGUMENT', 'seed'],
    ['scheduleSeed(1, -1)', () => scheduleSeed(1, -1), 'INVALID_ARGUMENT', 'index'],
    ['scheduleSeed(1, NaN)', () => scheduleSeed(1, Number.NaN), 'INVALID_ARGUMENT', 'index'],
    ['formatTraceEvent(null)', () => formatTraceEvent(null as never), 'INVALID_ARGUMENT', 'event'],
    ['traceText("x")', () => traceText('x' as never), 'INVALID_ARGUMENT', 'trace'],
    ['describeChoices(undefined)', () => describeChoices(undefined as never), 'INVALID_ARGUMENT', 'steps'],
    [
      'formatExploreFailure(null, …)',
      () => formatExploreFailure(null as never, {} as never),
      'INVALID_ARGUMENT',
      'result',
    ],
    [
      'formatExploreFailure(result, 5)',
      () => formatExploreFailure({} as never, 5 as never),
      'INVALID_ARGUMENT',
      'failure',
    ],
    [
      'formatExploreFailure(result, { kind })',
      () => formatExploreFailure({} as never, { kind: 'view' } as never),
      'INVALID_ARGUMENT',
      'failure',
    ],
    ['exploreSchedules(null)', () => exploreSchedules(null as never), 'INVALID_OPTION', 'options'],
    [
      'exploreSchedules without a scenario',
      () => exploreSchedules({} as never),
      'INVALID_OPTION',
      'scenario',
    ],
    [
      'an unknown option',
      () => exploreSchedules({ scenario, schedule: 5 } as never),
      'INVALID_OPTION',
      'schedule',
    ],
    [
      "scheduler 'dfs'",
      () => exploreSchedules({ scenario, scheduler: 'dfs' as never }),
      'INVALID_OPTION',
      'scheduler',
    ],
    ['schedules 0', () => exploreSchedules({ scenario, schedules: 0 }), 'INVALID_OPTION', 'schedules'],
    ['schedules 2.5', () => exploreSchedules({ scenario, schedules: 2.5 }), 'INVALID_OPTION', 'schedules'],
    ['minutes -1', () => exploreSchedules({ scenario, minutes: -1 }), 'INVALID_OPTION', 'minutes'],
    ['seed 0.5', () => exploreSchedules({ scenario, seed: 0.5 }), 'INVALID_OPTION', 'seed'],
    ['depth 0', () => exploreSchedules({ scenario, depth: 0 }), 'INVALID_OPTION', 'depth'],
    [
      'maxSteps "many"',
      () => exploreSchedules({ scenario, maxSteps: 'many' as never }),
      'INVALID_OPTION',
      'maxSteps',
    ],
    ['stallTurns -5', () => exploreSchedules({ scenario, stallTurns: -5 }), 'INVALID_OPTION', 'stallTurns'],
    [
      'checkEvery "always"',
      () => exploreSchedules({ scenario, checkEvery: 'always' as never }),
      'INVALID_OPTION',
      'checkEvery',
    ],
    ['property 5', () => exploreSchedules({ scenario, property: 5 as never }), 'INVALID_OPTION', 'property'],
    [
      'progressEveryMs 0',
      () => exploreSchedules({ scenario, progressEveryMs: 0 }),
      'INVALID_OPTION',
      'progressEveryMs',
    ],
    ['replaySchedule(undefined)', () => replaySchedule(undefined as never), 'INVALID_OPTION', 'options'],
    [
      'replaySchedule without a schedule',
      () => replaySchedule({ scenario } as never),
      'INVALID_ARGUMENT',
      'schedule',
    ],
    [
      "replaySchedule of 'v2:1'",
      () => replaySchedule({ scenario, schedule: 'v2:1' }),
      'INVALID_ARGUMENT',
      'schedule',
    ],
    [
      'replaySchedule of [-1]',
      () => replaySchedule({ scenario, schedule: { decisions: [-1] } }),
      'INVALID_ARGUMENT',
      'schedule',
    ],
    [
      'replaySchedule with seed NaN',
      () => replaySchedule({ scenario, schedule: 'v1:', seed: Number.NaN }),
      'INVALID_OPTION',
      'seed',
    ],
    ["exploreTest('')", () => exploreTest('', { scenario }), 'INVALID_ARGUMENT', 'name'],
    ['exploreTest(name, null)', () => exploreTest('x', null as never), 'INVALID_OPTION', 'options'],
    [
      'exploreTest with schedules 0',
      () => exploreTest('x', { scenario, schedules: 0 }),
      'INVALID_OPTION',
      'schedules',
    ],
    [
      'exploreTest with timeout -1',
      () => exploreTest('x', { scenario, timeout: -1 }),
      'INVALID_OPTION',
      'timeout',
    ],
    [
      "exploreTest expecting failure 'crash'",
      () => exploreTest('x', { scenario, expectFailure: 'crash' as never }),
      'INVALID_OPTION',
      'expectFailure',
    ],
  ])('%s: a typed error, nothing run', async (_what, call, code, argument) => {
    const before = ran;
    const error = await caught(call);
    expect(error).toBeInstanceOf(TestkitError);
    expect(error).toMatchObject({ code, argument });
    expect(ran).toBe(before);
  });

  it.each<[string, (ctx: ExploreContext) => unknown, string]>([
    ['ctx.watch(null)', (ctx) => ctx.watch(null as never), 'td'],
    ['ctx.watch({ tdr })', (ctx) => ctx.watch({ tdr: 1 } as never), 'td'],
    ['ctx.spawn("", …)', (ctx) => ctx.spawn('', async () => 1), 'actor'],
    ['ctx.spawn("a", 5)', (ctx) => ctx.spawn('a', 5 as never), 'action'],
  ])(
    '%s in a scenario: INVALID_ARGUMENT naming %s, reported as the scenario’s error',
    async (_what, misuse, argument) => {
      let error: unknown;
      const result = await exploreSchedules({
        scenario: async (ctx) => {
          const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 30 } }, ctx.services);
          try {
            await misuse(ctx);
          } catch (e) {
            error = e;
          }
          const hosted = await mirror(module, { gpaw: 48, vcpus: 1 });
          return ctx.watch({ module, tdr: hosted.td.tdr });
        },
        schedules: 1,
      });
      expect(result.failure).toBeUndefined();
      expect(error).toBeInstanceOf(TestkitError);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', argument });
    },
  );
});
