import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  assertInvariants,
  buildTd,
  type ControlledScheduler,
  checkInvariants,
  encodeLeaf,
  formatSchedule,
  MemoryTraceSink,
  makeGprs,
  PctScheduler,
  parseSchedule,
  RandomScheduler,
  ReplayScheduler,
  SteppingScheduler,
  TdcallLeaf,
  TdxModule,
  TdxSimError,
} from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import { aug, tables } from '../sept/helpers.js';

const PAGE = 0x1000;

/** The trace as bytes (bigints as hex), for byte-for-byte comparisons. */
function traceBytes(trace: MemoryTraceSink): string {
  return JSON.stringify(trace.events, (_key, value) =>
    typeof value === 'bigint' ? `0x${value.toString(16)}` : value,
  );
}

/**
 * A small race: two vCPUs accept the same lazily-AUGed page and vCPU 1 another one, while a host thread named
 * `worker` AUGs a third page. Returns the statuses, the trace bytes, the module and the TD.
 */
async function raceOn(scheduler: ControlledScheduler, trace: MemoryTraceSink) {
  const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 32 } }, { scheduler, trace });
  const td = await buildTd(module, { vcpus: 2 });
  // A stopped run ends the host threads with the stop reason; the tests look at the scheduler instead.
  for (const thread of td.run(new LazyAugVmm(module, td))) thread.catch(() => {});
  await tables(module, td, 0, 0);
  const worker = module.runAs('worker', () => td.host.pageAug(td.tdr, 3 * PAGE, 0, td.allocator.alloc4k()));
  const statuses = await Promise.all([
    accept(td, PAGE, 0, 0),
    accept(td, PAGE, 0, 1).then(async (first) => [first, await accept(td, 2 * PAGE, 0, 1)]),
    worker.then((r) => r.status),
  ]);
  assertInvariants(module);
  return { statuses, trace: traceBytes(trace), module, td };
}

describe('schedule text form', () => {
  test.prop([fc.array(fc.nat({ max: 40 }), { maxLength: 200 })])(
    'parse(format(s)) is s without its trailing zeros',
    (decisions) => {
      const trimmed = [...decisions];
      while (trimmed.length > 0 && trimmed[trimmed.length - 1] === 0) trimmed.pop();
      expect(parseSchedule(formatSchedule({ decisions })).decisions).toEqual(trimmed);
    },
  );

  it('runs of equal decisions are written d*n', () => {
    expect(formatSchedule({ decisions: [0, 0, 0, 1, 2, 2, 0, 0] })).toBe('v1:0*3.1.2*2');
    expect(formatSchedule({ decisions: [] })).toBe('v1:');
    expect(parseSchedule(' v1:0*12.1 ').decisions).toEqual([...new Array(12).fill(0), 1]);
  });

  it.each(['', '0.1', 'v2:1', 'v1:a', 'v1:1*0', 'v1:1..2', 'v1:-1'])(
    'rejects %j with INVALID_ARGUMENT',
    (text) => {
      expect(() => parseSchedule(text)).toThrow(TdxSimError);
      try {
        parseSchedule(text);
      } catch (error) {
        expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', argument: 'schedule' });
      }
    },
  );
});

describe('controlled schedulers', () => {
  it('the same seed gives the same schedule and a byte-identical trace; replaying the schedule gives it again', async () => {
    const runs = [];
    for (let i = 0; i < 2; i++) {
      const scheduler = new RandomScheduler({ seed: 7 });
      const run = await raceOn(scheduler, new MemoryTraceSink());
      runs.push({ ...run, schedule: formatSchedule(scheduler.schedule), signature: scheduler.signature() });
      scheduler.dispose();
    }
    const [a, b] = runs as [(typeof runs)[0], (typeof runs)[0]];
    expect(b.schedule).toBe(a.schedule);
    expect(b.trace).toBe(a.trace);
    expect(b.signature).toBe(a.signature);
    const replay = new ReplayScheduler(a.schedule);
    const again = await raceOn(replay, new MemoryTraceSink());
    expect(again.trace).toBe(a.trace);
    expect(formatSchedule(replay.schedule)).toBe(a.schedule);
    expect(replay.signature()).toBe(a.signature);
    replay.dispose();
  });

  it('different seeds interleave differently, and every interleaving leaves the module consistent', async () => {
    const signatures = new Set<string>();
    const outcomes = new Set<string>();
    for (let seed = 1; seed <= 12; seed++) {
      const scheduler = new RandomScheduler({ seed });
      const run = await raceOn(scheduler, new MemoryTraceSink());
      signatures.add(scheduler.signature());
      outcomes.add(JSON.stringify(run.statuses, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v)));
      // The page both vCPUs raced for ended accepted exactly once.
      expect(run.module.privatePage(run.td.tdr, PAGE).state).toBe('MAPPED');
      scheduler.dispose();
    }
    expect(signatures.size).toBeGreaterThan(6);
    // Sometimes the other vCPU's ACCEPT wins, sometimes a host AUG holds the entry: more than one outcome is seen.
    expect(outcomes.size).toBeGreaterThan(1);
  });

  test.prop([fc.array(fc.nat({ max: 6 }), { maxLength: 60 })], { numRuns: 15 })(
    'any list of numbers is a schedule: it replays to the same trace twice, and its normalised form replays it too',
    async (decisions) => {
      const first = new ReplayScheduler({ decisions });
      const a = await raceOn(first, new MemoryTraceSink());
      first.dispose();
      const normalised = formatSchedule(first.schedule);
      const second = new ReplayScheduler(normalised);
      const b = await raceOn(second, new MemoryTraceSink());
      second.dispose();
      expect(b.trace).toBe(a.trace);
      expect(formatSchedule(second.schedule)).toBe(normalised);
    },
  );

  it('names the threads: vcpu<i> for guest code, vcpu<i>:host for the host threads, runAs names, main otherwise', async () => {
    const scheduler = new RandomScheduler({ seed: 3 });
    const { module, td } = await raceOn(scheduler, new MemoryTraceSink());
    const actorsOf = (flow: string) =>
      new Set(scheduler.steps.filter((s) => s.point.flow === flow).map((s) => s.actor));
    expect(actorsOf('TDH.VP.ENTER')).toEqual(new Set(['vcpu0:host', 'vcpu1:host']));
    expect(actorsOf('TDCALL')).toEqual(new Set(['vcpu0', 'vcpu1']));
    // AUGs come from the VMM on each vCPU's host thread (named by runVcpu), and from the worker.
    expect([...actorsOf('TDH.MEM.PAGE.AUG')].sort()).toEqual(expect.arrayContaining(['worker']));
    for (const actor of actorsOf('TDH.MEM.PAGE.AUG')) expect(actor).toMatch(/^(vcpu[01]:host|worker)$/);
    // Build-time SEAMCALLs, made outside any named thread, are main's.
    expect(actorsOf('TDH.MNG.CREATE')).toEqual(new Set(['main']));
    scheduler.dispose();
    expect(scheduler.currentActor()).toBeUndefined();
    expect(checkInvariants(module)).toEqual([]);
    expect(module.privatePage(td.tdr, 3 * PAGE).state).toBe('PENDING');
  });

  it('PCT with depth 1 never changes priorities: once a thread ran ahead of another, it always does', async () => {
    for (let seed = 1; seed <= 6; seed++) {
      const scheduler = new PctScheduler({ seed, depth: 1 });
      await raceOn(scheduler, new MemoryTraceSink());
      const ahead = new Set<string>();
      for (const step of scheduler.steps) {
        for (const other of step.passedOver ?? []) {
          if (other.actor === step.actor) continue;
          expect(ahead.has(`${other.actor}>${step.actor}`)).toBe(false);
          ahead.add(`${step.actor}>${other.actor}`);
        }
      }
      expect(scheduler.changePoints).toEqual([]);
      scheduler.dispose();
    }
  });

  it('PCT with depth d draws d − 1 change points within the expected steps, and demotes the thread there', async () => {
    // No more change points than steps to put them at.
    expect(new PctScheduler({ seed: 1, depth: 5, expectedSteps: 2 }).changePoints).toEqual([0, 1]);
    const scheduler = new PctScheduler({ seed: 5, depth: 4, expectedSteps: 60 });
    expect(scheduler.changePoints).toHaveLength(3);
    for (const point of scheduler.changePoints) expect(point).toBeGreaterThanOrEqual(0);
    for (const point of scheduler.changePoints) expect(point).toBeLessThan(60);
    await raceOn(scheduler, new MemoryTraceSink());
    scheduler.dispose();
    // Same seed, same choices.
    const again = new PctScheduler({ seed: 5, depth: 4, expectedSteps: 60 });
    await raceOn(again, new MemoryTraceSink());
    expect(again.schedule).toEqual(scheduler.schedule);
    again.dispose();
  });

  it('PCT turns fair after fairAfter steps: a high-priority thread polling for ever cannot starve the one it waits for', async () => {
    const longest: number[] = [];
    for (let seed = 1; seed <= 8; seed++) {
      const scheduler = new PctScheduler({ seed, depth: 1, fairAfter: 60 });
      const module = new TdxModule({}, { scheduler });
      let ready = false;
      const poll = module.runAs('poller', async () => {
        let polls = 0;
        while (!ready) {
          polls++;
          await module.yieldAt({ flow: 'test', step: 'poll', tdr: 0 });
        }
        return polls;
      });
      const set = module.runAs('setter', async () => {
        await module.yieldAt({ flow: 'test', step: 'set', tdr: 0 });
        ready = true;
      });
      await Promise.all([poll, set]);
      longest.push(scheduler.steps.length);
      scheduler.dispose();
    }
    // When the poller drew the higher priority it ran alone until the fair phase; otherwise the setter ran first.
    expect(longest.some((steps) => steps > 60)).toBe(true);
    expect(longest.some((steps) => steps < 10)).toBe(true);
    for (const steps of longest) expect(steps).toBeLessThan(1_000);
  });

  it('a run that never quiesces is stopped after maxSteps: its flows fail and release their locks', async () => {
    const scheduler = new RandomScheduler({ seed: 1, maxSteps: 300 });
    const trace = new MemoryTraceSink();
    const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 32 } }, { scheduler, trace });
    const td = await buildTd(module, { vcpus: 1 });
    await aug(module, td, PAGE, 0);
    // A host thread that spins: BLOCK and UNBLOCK the same page for ever.
    const spin = module.runAs('spinner', async () => {
      for (;;) {
        await td.host.rangeBlock(td.tdr, PAGE, 0);
        await module.yieldAt({ flow: 'test.spin', step: 'between', tdr: td.tdr });
        await td.host.rangeUnblock(td.tdr, PAGE, 0);
      }
    });
    await expect(spin).rejects.toMatchObject({ code: 'SCHEDULE_STOPPED' });
    expect(scheduler.exhausted).toBe(true);
    expect(scheduler.stopped?.message).toMatch(/no quiescence after 300 scheduling steps/);
    expect(checkInvariants(module)).toEqual([]);
    scheduler.dispose();
  });

  it('onStep runs at every step with the flows stopped; a throw there stops the run with that error', async () => {
    const seen: number[] = [];
    const scheduler = new RandomScheduler({
      seed: 2,
      onStep: (step) => {
        seen.push(step.index);
        if (step.point.flow === 'TDH.MEM.PAGE.AUG') throw new Error('checker refused this state');
      },
    });
    await expect(raceOn(scheduler, new MemoryTraceSink())).rejects.toThrow();
    expect(scheduler.stopped?.message).toBe('checker refused this state');
    expect(seen).toEqual(seen.map((_, i) => i));
    scheduler.dispose();
  });

  it('module.yieldAt checks its point and is a no-op with the default scheduler', async () => {
    const { module, td } = await setup();
    expect(module.yieldAt({ flow: 'kvm.zap', step: 'blocked', tdr: td.tdr, gpa: PAGE })).toBeUndefined();
    expect(() => module.yieldAt({ flow: '', step: 'x', tdr: td.tdr })).toThrow(TdxSimError);
    expect(() => module.yieldAt({ flow: 'f', step: 's', tdr: -1 })).toThrow(/point.tdr/);
    expect(() => module.yieldAt({ flow: 'f', step: 's', tdr: 0, gpa: 0.5 })).toThrow(/point.gpa/);
    expect(module.runAs('worker', () => 42)).toBe(42);
    expect(() => module.runAs('', () => 0)).toThrow(/actor/);
  });

  it('schedulerDecides: false only with the run-to-completion scheduler (whose yield points all answer undefined)', () => {
    const tdmr = { base: 2 ** 36, size: 2 ** 30 };
    const point = { flow: 'test', step: 'x', tdr: 0 };
    const plain = new TdxModule({ tdmr });
    expect(plain.schedulerDecides).toBe(false);
    expect(plain.yieldAt(point)).toBeUndefined();
    const stepping = new TdxModule({ tdmr }, { scheduler: new SteppingScheduler(() => true) });
    expect(stepping.schedulerDecides).toBe(true);
    expect(stepping.yieldAt(point)).toBeInstanceOf(Promise);
    const random = new RandomScheduler({ seed: 1 });
    expect(new TdxModule({ tdmr }, { scheduler: random }).schedulerDecides).toBe(true);
    random.dispose();
  });
});

describe('external work (holdWhile)', () => {
  const VP_INFO = encodeLeaf(TdcallLeaf.VP_INFO);
  /**
   * vCPU 0 runs "guest code" outside the event loop (a timer of `delays[i]` ms, as a worker thread would take) before
   * each of its TDCALLs (0: none), registered with holdWhile when `hold`; vCPU 1 makes TDCALLs meanwhile. Returns the trace.
   */
  async function externalRace(scheduler: ControlledScheduler, delays: readonly number[], hold: boolean) {
    const trace = new MemoryTraceSink();
    const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 32 } }, { scheduler, trace });
    const td = await buildTd(module, { vcpus: 2 });
    for (const thread of td.run(new LazyAugVmm(module, td))) thread.catch(() => {});
    const cpu0 = td.guest(0);
    const cpu1 = td.guest(1);
    const held: number[] = [];
    const vcpu0 = (async () => {
      for (const ms of delays) {
        // 0: code that ends at once (no timer at all).
        const work = ms === 0 ? Promise.resolve() : new Promise<void>((resolve) => setTimeout(resolve, ms));
        if (hold) {
          const stepsBefore = scheduler.steps.length;
          await cpu0.holdWhile(work);
          // No decision was made while the work ran.
          held.push(scheduler.steps.length - stepsBefore);
        } else await work;
        await cpu0.tdcall(VP_INFO, makeGprs());
      }
    })();
    const vcpu1 = (async () => {
      for (let i = 0; i < 2 * delays.length; i++) await cpu1.tdcall(VP_INFO, makeGprs());
    })();
    await Promise.all([vcpu0, vcpu1]);
    return { trace: traceBytes(trace), held };
  }

  it('no decision is made while external work runs: the same schedule gives the same trace whatever the work took', async () => {
    const traces = new Set<string>();
    for (const delays of [
      [0, 0, 0, 0],
      [15, 1, 8, 0],
      [1, 12, 0, 20],
    ]) {
      const scheduler = new RandomScheduler({ seed: 5 });
      const run = await externalRace(scheduler, delays, true);
      expect(run.held).toEqual([0, 0, 0, 0]);
      expect(scheduler.holding).toBe(0);
      traces.add(run.trace);
      scheduler.dispose();
    }
    expect(traces.size).toBe(1);
  });

  it('without holdWhile the interleaving follows the wall clock (what the hold is for)', async () => {
    const traces = new Set<string>();
    for (const delays of [
      [0, 0, 0, 0],
      [25, 25, 25, 25],
    ]) {
      const scheduler = new RandomScheduler({ seed: 5 });
      traces.add((await externalRace(scheduler, delays, false)).trace);
      scheduler.dispose();
    }
    expect(traces.size).toBe(2);
  });

  it('holdWhile checks its argument; the default scheduler ignores it and returns the work', async () => {
    const scheduler = new RandomScheduler({ seed: 1 });
    expect(() => scheduler.holdWhile(42 as unknown as Promise<void>)).toThrow(/work/);
    scheduler.dispose();
    const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 32 } });
    const work = Promise.resolve(7);
    expect(module.holdWhile(work)).toBe(work);
    expect(() => module.holdWhile({} as unknown as Promise<void>)).toThrow(TdxSimError);
  });
});
