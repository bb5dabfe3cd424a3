/**
 * Backing-off yield points (issue 12): a flow spinning on contention is resumed only once a flow that does not spin
 * moved (or when every waiting flow spins), so the pace of a retry loop is the schedule's decision, never the event
 * loop's, and spinners cannot keep each other going.
 */
import { describe, expect, it } from 'vitest';
import {
  type ControlledScheduler,
  PctScheduler,
  RandomScheduler,
  ReplayScheduler,
  type ScheduleStep,
  TdxSimError,
} from '../../src/index.js';

const TDR = 0x1000;

/**
 * Thread `spinner` retries until `holder` has made 3 steps; each retry backs off. Returns the order of the steps.
 */
async function spinAgainstHolder(scheduler: ControlledScheduler): Promise<string[]> {
  const order: string[] = [];
  let held = 3;
  const holder = (async () => {
    while (held > 0) {
      await scheduler.yieldAt({ flow: 'holder', step: 'work', tdr: TDR, actor: 'holder' });
      order.push('holder');
      held--;
    }
  })();
  const spinner = (async () => {
    await scheduler.yieldAt({ flow: 'spinner', step: 'try', tdr: TDR, actor: 'spinner' });
    while (held > 0) {
      order.push('spin');
      await scheduler.yieldAt({ flow: 'spinner', step: 'retry', tdr: TDR, actor: 'spinner', backoff: true });
    }
    order.push('spinner done');
  })();
  await Promise.all([holder, spinner]);
  return order;
}

describe('backing-off yield points', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8])(
    'seed %i: a spinning flow never runs twice in a row while another waits',
    async (seed) => {
      const scheduler = new RandomScheduler({ seed });
      const order = await spinAgainstHolder(scheduler);
      scheduler.dispose();
      for (let i = 1; i < order.length; i++)
        if (order[i] === 'spin') expect(order[i - 1], order.join(' ')).not.toBe('spin');
      expect(order.filter((o) => o === 'holder')).toHaveLength(3);
      expect(order.at(-1)).toBe('spinner done');
      // The steps of a backing-off flow are recorded like any other, and replay exactly.
      const replay = new ReplayScheduler(scheduler.schedule);
      expect(await spinAgainstHolder(replay)).toEqual(order);
      expect(replay.divergence()).toBeUndefined();
      replay.dispose();
    },
  );

  it.each([1, 2, 3, 4, 5, 6])(
    'seed %i: two spinning flows do not pace each other: each spins at most once per step of the flow they wait for',
    async (seed) => {
      const scheduler = new PctScheduler({ seed, expectedSteps: 20 });
      const order: string[] = [];
      let held = 5;
      const holder = (async () => {
        while (held > 0) {
          await scheduler.yieldAt({ flow: 'holder', step: 'work', tdr: TDR, actor: 'holder' });
          order.push('holder');
          held--;
        }
      })();
      // One thread's two retry loops, as a host thread that kicks two vCPUs and waits for both.
      const spinner = (name: string) =>
        (async () => {
          while (held > 0) {
            order.push(name);
            await scheduler.yieldAt({ flow: name, step: 'retry', tdr: TDR, actor: 'kicker', backoff: true });
          }
        })();
      await Promise.all([holder, spinner('a'), spinner('b')]);
      scheduler.dispose();
      // Between two steps of the holder, each spinner ran at most once, whatever the priorities PCT drew.
      const rounds = order.join(' ').split('holder');
      for (const round of rounds) {
        const spins = round.trim().split(' ').filter(Boolean);
        expect(spins.filter((s) => s === 'a').length, order.join(' ')).toBeLessThanOrEqual(1);
        expect(spins.filter((s) => s === 'b').length, order.join(' ')).toBeLessThanOrEqual(1);
      }
      expect(scheduler.stepCount).toBeLessThanOrEqual(5 * 3 + 3);
    },
  );

  it('a flow alone backing off still runs (every waiting flow spins)', async () => {
    const scheduler = new RandomScheduler({ seed: 1 });
    let tries = 0;
    for (; tries < 3; tries++) await scheduler.yieldAt({ flow: 'f', step: 's', tdr: TDR, backoff: true });
    expect(tries).toBe(3);
    scheduler.dispose();
  });

  it('backoff must be a boolean', () => {
    const scheduler = new RandomScheduler({ seed: 1 });
    expect(() =>
      scheduler.yieldAt({ flow: 'f', step: 's', tdr: TDR, backoff: 'yes' as unknown as boolean }),
    ).toThrow(TdxSimError);
    scheduler.dispose();
  });
});

describe('the steps a scheduler records', () => {
  it.each([1, 2, 3])(
    'seed %i: stepCount, backOffSteps and the step objects (made when asked for) agree with onStep',
    async (seed) => {
      const seen: ScheduleStep[] = [];
      const watched = new RandomScheduler({ seed, onStep: (step) => seen.push(step) });
      await spinAgainstHolder(watched);
      watched.dispose();
      const quiet = new RandomScheduler({ seed });
      await spinAgainstHolder(quiet);
      quiet.dispose();
      // The same run with and without onStep: the same steps, as objects and as counts.
      expect(quiet.stepCount).toBe(seen.length);
      expect(quiet.steps).toEqual(seen);
      expect(watched.steps).toEqual(seen);
      expect(quiet.backOffSteps).toBe(seen.filter((s) => s.point.backoff === true).length);
      expect(quiet.signature()).toBe(watched.signature());
      // Every real choice lists the flows passed over, oldest first, the one that ran left out.
      for (const step of seen)
        if (step.waiting > 1) expect(step.passedOver).toHaveLength(step.waiting - 1);
        else expect(step.passedOver).toBeUndefined();
    },
  );

  it('backOffSteps counts the resumptions of a spinning flow', async () => {
    let spins = 0;
    for (let seed = 1; seed <= 8; seed++) {
      const scheduler = new RandomScheduler({ seed });
      const order = await spinAgainstHolder(scheduler);
      scheduler.dispose();
      // Every 'spin' is followed by a yield at the backing-off point, resumed once.
      expect(scheduler.backOffSteps).toBe(order.filter((o) => o === 'spin').length);
      spins += scheduler.backOffSteps;
    }
    expect(spins).toBeGreaterThan(0);
  });

  it('a back-off step at which onStep throws is counted in both stepCount and backOffSteps', async () => {
    let stopped = 0;
    for (let seed = 1; seed <= 8; seed++) {
      const scheduler = new RandomScheduler({
        seed,
        onStep: (step) => {
          if (step.point.backoff === true) throw new Error('onStep stops at a back-off');
        },
      });
      const run = spinAgainstHolder(scheduler).then(
        () => false,
        () => true,
      );
      if (await run) stopped++;
      scheduler.dispose();
      const steps = scheduler.steps;
      expect(scheduler.stepCount).toBe(steps.length);
      expect(scheduler.backOffSteps).toBe(steps.filter((s) => s.point.backoff === true).length);
    }
    // Some seeds reach a back-off: their run ends at it, the step recorded.
    expect(stopped).toBeGreaterThan(0);
  });

  it('steps, once read, is the same array and grows with the run', async () => {
    const scheduler = new RandomScheduler({ seed: 4 });
    await scheduler.yieldAt({ flow: 'f', step: 'a', tdr: TDR, actor: 'one' });
    const steps = scheduler.steps;
    expect(steps).toHaveLength(1);
    await scheduler.yieldAt({ flow: 'f', step: 'b', tdr: TDR, actor: 'one' });
    expect(steps).toHaveLength(2);
    expect(scheduler.steps).toBe(steps);
    expect(steps.map((s) => s.point.step)).toEqual(['a', 'b']);
    expect(scheduler.stepCount).toBe(2);
    expect(scheduler.backOffSteps).toBe(0);
    scheduler.dispose();
  });
});
