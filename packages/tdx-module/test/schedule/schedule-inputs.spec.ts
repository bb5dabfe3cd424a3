/**
 * What schedulers accept and refuse: schedules that always read back, options checked before anything runs, a
 * subclass's bug ending its run instead of the process, stale schedules told apart from faithful replays, and seeds
 * whose every bit counts.
 */
import { describe, expect, it } from 'vitest';
import {
  assertSchedule,
  buildTd,
  ControlledScheduler,
  describePoint,
  formatSchedule,
  MAX_DECISION,
  MemoryTraceSink,
  PctScheduler,
  parseSchedule,
  RandomScheduler,
  ReplayScheduler,
  SeededRng,
  TdxModule,
  TdxSimError,
  type WaitingFlow,
  type YieldPoint,
} from '../../src/index.js';
import { accept, LazyAugVmm } from '../harness.js';
import { tables } from '../sept/helpers.js';

const PAGE = 0x1000;

/** Two vCPUs accept the same lazily-AUGed page while a host thread AUGs another: a few real choices. */
async function race(scheduler: ControlledScheduler) {
  const module = new TdxModule(
    { tdmr: { base: 2 ** 34, size: 2 ** 32 } },
    { scheduler, trace: new MemoryTraceSink() },
  );
  const td = await buildTd(module, { vcpus: 2 });
  for (const thread of td.run(new LazyAugVmm(module, td))) thread.catch(() => {});
  await tables(module, td, 0, 0);
  const worker = module.runAs('worker', () => td.host.pageAug(td.tdr, 3 * PAGE, 0, td.allocator.alloc4k()));
  return Promise.all([accept(td, PAGE, 0, 0), accept(td, PAGE, 0, 1), worker]);
}

function thrown(run: () => unknown): { code?: string; argument?: string; name?: string } {
  try {
    run();
  } catch (error) {
    return error as { code?: string; argument?: string; name?: string };
  }
  throw new Error('did not throw');
}

describe('formatSchedule writes only what parseSchedule reads back', () => {
  it.each([
    ['a fraction', [1.5]],
    ['a negative number', [-1]],
    ['NaN', [Number.NaN, 2]],
    ['a number past six digits', [1e21]],
    ['a string', ['1']],
  ])('refuses %s with INVALID_ARGUMENT naming schedule', (_what, decisions) => {
    expect(thrown(() => formatSchedule({ decisions: decisions as number[] }))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      argument: 'schedule',
    });
  });

  it.each([null, 5, 'v1:1', { decisions: 'ab' }, { decisions: [1], checksum: 'xyz' }])(
    'refuses %j as a schedule',
    (schedule) => {
      expect(thrown(() => formatSchedule(schedule as never))).toMatchObject({
        code: 'INVALID_ARGUMENT',
        argument: 'schedule',
      });
    },
  );

  it('the largest decision and a checksum round-trip', () => {
    const schedule = { decisions: [MAX_DECISION, 0, 3, 3], checksum: '0123abcd' };
    expect(formatSchedule(schedule)).toBe(`v1:${MAX_DECISION}.0.3*2@0123abcd`);
    expect(parseSchedule(formatSchedule(schedule))).toEqual(schedule);
    expect(parseSchedule('v1:@0123abcd')).toEqual({ decisions: [], checksum: '0123abcd' });
    // Strings written before checksums existed still read.
    expect(parseSchedule('v1:0*3.1*2')).toEqual({ decisions: [0, 0, 0, 1, 1] });
  });

  it.each(['v1:1@', 'v1:1@0123abc', 'v1:1@0123ABCG', 'v1:1@12345678@12345678', 'v1:1.@01234567'])(
    'parseSchedule refuses %j',
    (text) => {
      expect(thrown(() => parseSchedule(text))).toMatchObject({
        code: 'INVALID_ARGUMENT',
        argument: 'schedule',
      });
    },
  );

  it('assertSchedule accepts a schedule and refuses a non-integer decision', () => {
    expect(() => assertSchedule({ decisions: [0, 1, 2] })).not.toThrow();
    expect(() => assertSchedule({ decisions: [0, 0.5] })).toThrow(/decisions\[1\]/);
  });
});

describe('scheduler options are checked before anything runs', () => {
  it.each([
    ['new RandomScheduler()', () => new RandomScheduler(undefined as never), 'options'],
    ['new PctScheduler(null)', () => new PctScheduler(null as never), 'options'],
    ['RandomScheduler without a seed', () => new RandomScheduler({} as never), 'seed'],
    [
      'an unknown option of RandomScheduler',
      () => new RandomScheduler({ seed: 1, maxStep: 5 } as never),
      'maxStep',
    ],
    ['an unknown option of PctScheduler', () => new PctScheduler({ seed: 1, dept: 2 } as never), 'dept'],
    [
      'an unknown option of ReplayScheduler',
      () => new ReplayScheduler('v1:', { maxStep: 5 } as never),
      'maxStep',
    ],
    ['ReplayScheduler maxSteps 0', () => new ReplayScheduler('v1:', { maxSteps: 0 }), 'maxSteps'],
    [
      'ReplayScheduler onStep not a function',
      () => new ReplayScheduler('v1:', { onStep: 5 as never }),
      'onStep',
    ],
    ['ReplayScheduler of garbage', () => new ReplayScheduler('garbage'), 'schedule'],
    [
      'ReplayScheduler of { decisions: "ab" }',
      () => new ReplayScheduler({ decisions: 'ab' } as never),
      'schedule',
    ],
    ['ReplayScheduler of a number', () => new ReplayScheduler(5 as never), 'schedule'],
    ['ReplayScheduler of [NaN]', () => new ReplayScheduler({ decisions: [Number.NaN] }), 'schedule'],
  ])('%s: a TdxSimError naming %s', (_what, make, argument) => {
    const error = thrown(make);
    expect(TdxSimError.is(error)).toBe(true);
    expect(error.argument).toBe(argument);
  });
});

describe("a subclass's bug ends its run, never the process", () => {
  class Returns extends ControlledScheduler {
    constructor(readonly value: unknown) {
      super();
    }
    protected choose(): number {
      return this.value as number;
    }
  }
  class Throws extends ControlledScheduler {
    protected choose(): number {
      return 0;
    }
    protected override beforeStep(waiting: readonly WaitingFlow[]): void {
      if (waiting.length > 1) throw new Error('my scheduler broke');
    }
  }

  it.each([Number.NaN, Number.POSITIVE_INFINITY, '1', undefined])(
    'choose returning %j stops the run with INVALID_ARGUMENT naming choose',
    async (value) => {
      const scheduler = new Returns(value);
      await expect(race(scheduler)).rejects.toThrow();
      expect(scheduler.stopped).toMatchObject({ code: 'INVALID_ARGUMENT', argument: 'choose' });
      scheduler.dispose();
    },
  );

  it('a beforeStep that throws stops the run with its error', async () => {
    const scheduler = new Throws();
    await expect(race(scheduler)).rejects.toThrow();
    expect(scheduler.stopped?.message).toBe('my scheduler broke');
    scheduler.dispose();
  });

  it('a fraction is truncated, as documented', async () => {
    const scheduler = new Returns(1.5);
    await race(scheduler);
    expect(scheduler.schedule.decisions.every((d) => d === 1 || d === 0)).toBe(true);
    scheduler.dispose();
  });
});

describe('stale schedules are told apart from faithful replays', () => {
  async function recorded() {
    const scheduler = new RandomScheduler({ seed: 4 });
    await race(scheduler);
    scheduler.dispose();
    return scheduler.schedule;
  }

  it('a recorded schedule carries the checksum of its interleaving, and its replay matches it', async () => {
    const schedule = await recorded();
    expect(schedule.checksum).toMatch(/^[0-9a-f]{8}$/);
    const replay = new ReplayScheduler(formatSchedule(schedule));
    await race(replay);
    replay.dispose();
    expect(replay.divergence()).toBeUndefined();
    expect(replay.schedule).toEqual(schedule);
  });

  it('the same decisions with the checksum of another interleaving: the replay says it diverged', async () => {
    const schedule = await recorded();
    const replay = new ReplayScheduler({ ...schedule, checksum: '00000000' });
    await race(replay);
    replay.dispose();
    expect(replay.divergence()).toMatch(
      /interleaved differently from the recording \(checksum [0-9a-f]{8}, recorded 00000000\)/,
    );
  });

  it('a schedule without a checksum that wraps or is left over: the replay says it does not fit', async () => {
    const schedule = await recorded();
    const tooMany = new ReplayScheduler({
      decisions: [...schedule.decisions, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    });
    await race(tooMany);
    tooMany.dispose();
    expect(tooMany.leftover).toBeGreaterThan(0);
    expect(tooMany.divergence()).toMatch(/left unused/);
    const wrapping = new ReplayScheduler({ decisions: [7] });
    await race(wrapping);
    wrapping.dispose();
    expect(wrapping.wrapped).toBe(1);
    expect(wrapping.divergence()).toMatch(/1 decision named a position past the flows waiting/);
    // Without a checksum and nothing wrapped or left: nothing to say.
    const plain = new ReplayScheduler({ decisions: schedule.decisions });
    await race(plain);
    plain.dispose();
    expect(plain.divergence()).toBeUndefined();
  });
});

describe('seeds: every bit counts', () => {
  it('seeds 1 and 2^32 + 1 (and -1 and 2^32 − 1) give different streams; seeds below 2^32 keep theirs', () => {
    const first = (seed: number) => new SeededRng(seed).next();
    expect(first(2 ** 32 + 1)).not.toBe(first(1));
    expect(first(-1)).not.toBe(first(2 ** 32 - 1));
    expect(first(2 ** 53 - 1)).not.toBe(first(2 ** 32 - 1));
    // The streams of seeds in [0, 2^32) are what they were before the high bits counted (values of the old code).
    expect(first(0)).toBe(0.1276340070180595);
    expect(first(1)).toBe(0.263228221796453);
    expect(first(2 ** 32 - 1)).toBe(0.5230384916067123);
  });
});

describe("a ControlledScheduler's own methods and describePoint check what they are given", () => {
  const scheduler = () => new RandomScheduler({ seed: 1 });
  it.each([
    ['yieldAt(null)', () => scheduler().yieldAt(null as never), 'point'],
    ['yieldAt without a step', () => scheduler().yieldAt({ flow: 'x', tdr: 0 } as never), 'point.step'],
    [
      'yieldAt with a negative TDR',
      () => scheduler().yieldAt({ flow: 'x', step: 'y', tdr: -1 }),
      'point.tdr',
    ],
    ["runAs('', …)", () => scheduler().runAs('', () => 1), 'actor'],
    ["runAs('a', 5)", () => scheduler().runAs('a', 5 as never), 'run'],
    ["stop('why')", () => scheduler().stop('why' as never), 'reason'],
    ['describePoint(5, point)', () => describePoint(5 as never, { flow: 'x', step: 'y', tdr: 0 }), 'actor'],
    ["describePoint('a', null)", () => describePoint('a', null as never), 'point'],
  ])('%s: a TdxSimError naming %s', (_what, call, argument) => {
    const error = thrown(call);
    expect(TdxSimError.is(error)).toBe(true);
    // An address has its own code; every other argument is INVALID_ARGUMENT.
    expect(error).toMatchObject({
      code: argument === 'point.tdr' ? 'INVALID_ADDRESS' : 'INVALID_ARGUMENT',
      argument,
    });
  });
});

describe("module.yieldAt checks a backend's point once, whatever scheduler takes it", () => {
  const module = (scheduler: ControlledScheduler) =>
    new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 32 } }, { scheduler });

  it.each([
    ['an empty flow', { flow: '', step: 'y', tdr: 0 }, 'point.flow', 'INVALID_ARGUMENT'],
    ['a GPA past 2^52', { flow: 'x', step: 'y', tdr: 0, gpa: 2 ** 52 }, 'point.gpa', 'INVALID_ADDRESS'],
    ['an empty actor', { flow: 'x', step: 'y', tdr: 0, actor: '' }, 'point.actor', 'INVALID_ARGUMENT'],
    [
      'a backoff that is no boolean',
      { flow: 'x', step: 'y', tdr: 0, backoff: 1 },
      'point.backoff',
      'INVALID_ARGUMENT',
    ],
  ])('refuses %s at once (the scheduler does not check it again)', (_what, point, argument, code) => {
    const scheduler = new RandomScheduler({ seed: 1 });
    const tdx = module(scheduler);
    const error = thrown(() => tdx.runAs('worker', () => tdx.yieldAt(point as never)));
    expect(error).toMatchObject({ code, argument });
    expect(scheduler.waiting).toEqual([]);
    scheduler.dispose();
  });

  it('hands every point to a subclass that overrides yieldAt, with the thread runAs named', async () => {
    const seen: YieldPoint[] = [];
    class Watching extends RandomScheduler {
      override yieldAt(point: YieldPoint): Promise<void> {
        seen.push(point);
        return super.yieldAt(point);
      }
    }
    const scheduler = new Watching({ seed: 1 });
    const tdx = module(scheduler);
    await tdx.runAs('worker', () => tdx.yieldAt({ flow: 'x', step: 'y', tdr: 0, gpa: PAGE }));
    expect(seen).toEqual([{ flow: 'x', step: 'y', tdr: 0, gpa: PAGE, actor: 'worker' }]);
    expect(scheduler.steps.map((step) => step.actor)).toEqual(['worker']);
    scheduler.dispose();
  });

  it("checks the thread name of a subclass's own currentActor", () => {
    class Nameless extends RandomScheduler {
      override currentActor(): string | undefined {
        return '';
      }
    }
    const scheduler = new Nameless({ seed: 1 });
    const error = thrown(() => module(scheduler).yieldAt({ flow: 'x', step: 'y', tdr: 0 }));
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', argument: 'point.actor' });
    scheduler.dispose();
  });
});

describe('the waiting list stays oldest first when a flow leaves it', () => {
  it('resuming the first, a middle and the last flow leaves the others in their order of arrival', async () => {
    // choose picks the given positions in turn; what it is handed and what `waiting` says at each later step show
    // the order kept (a removal that swapped the last flow into the gap would put e before b).
    const chosen: string[][] = [];
    const listed: string[][] = [];
    class Picks extends ControlledScheduler {
      readonly #picks = [0, 1, 2, 1];
      protected choose(waiting: readonly WaitingFlow[], step: number): number {
        chosen.push(waiting.map((flow) => flow.actor));
        return this.#picks[step] as number;
      }
      protected override beforeStep(): void {
        listed.push(this.waiting.map((flow) => flow.actor));
      }
    }
    const scheduler = new Picks();
    const resumed: string[] = [];
    await Promise.all(
      ['a', 'b', 'c', 'd', 'e'].map((actor) =>
        scheduler.yieldAt({ flow: 'x', step: 'y', tdr: 0, actor }).then(() => resumed.push(actor)),
      ),
    );
    const arrived = ['a', 'b', 'c', 'd', 'e'];
    const left = [arrived, ['b', 'c', 'd', 'e'], ['b', 'd', 'e'], ['b', 'd']];
    expect(chosen).toEqual(left);
    expect(listed).toEqual([...left, ['b']]);
    expect(resumed).toEqual(['a', 'c', 'e', 'd', 'b']);
    expect(scheduler.waiting).toEqual([]);
    scheduler.dispose();
  });
});
