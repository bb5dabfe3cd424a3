import { GuestIds, guestModule, TdGuest, tdgAccept } from '@tdxsim/guest';
import { composeTd, TdxIds, TdxModule, TdxStatus, type VmmFactory } from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { describe, expect, it } from 'vitest';
import {
  buggyVmm,
  type ExploreContext,
  type ExploreProgress,
  exploreSchedules,
  faultRacingZap,
  hostileVmm,
  MirrorVmm,
  replaySchedule,
  SafetyMonitor,
  TestkitError,
  traceText,
} from '../src/index.js';

const TDMR = { base: 2 ** 34, size: 2 ** 30 } as const;
const PAGE = 0x1000;

const lockless = buggyVmm('lockless-zap');
if (lockless === undefined) throw new Error('missing catalogue entry');
const fixedFactory: VmmFactory = async (module, build) => {
  const vmm = await MirrorVmm.create(module, { mmuLock: true }, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

describe('the buggy-VMM catalogue: lockless-zap found, shrunk and replayed', () => {
  it.each(['random', 'pct'] as const)(
    '%s: found within 200 schedules; the shrunk schedule replays the same failure and trace every time',
    async (scheduler) => {
      const scenario = faultRacingZap(lockless.factory());
      const result = await exploreSchedules({ scenario, scheduler, schedules: 200, seed: 1 });
      expect(result.ok).toBe(false);
      const failure = result.failure;
      if (failure === undefined) throw new Error('no failure');
      expect(result.schedulesRun).toBeLessThanOrEqual(200);
      // The mirror believes P is mapped; the Secure-EPT no longer holds it.
      expect(failure.kind).toBe('view');
      expect(failure.message).toMatch(
        /believes 0x100000 is mapped private \(4K\) but the Secure-EPT holds FREE/,
      );
      expect(failure.schedule.length).toBeLessThanOrEqual(failure.found.length);
      expect(failure.choices.some((line) => line.includes('mirror.zap mirror-cleared'))).toBe(true);
      expect(failure.replay).toContain(failure.schedule);
      const first = await replaySchedule({ scenario, schedule: failure.schedule, seed: 1 });
      const second = await replaySchedule({ scenario, schedule: failure.schedule, seed: 1 });
      expect(first.failure).toEqual({ kind: 'view', message: failure.message });
      expect(second.traceText).toBe(first.traceText);
      expect(first.traceText).toBe(traceText(failure.trace));
      expect(first.schedule).toBe(failure.schedule);
    },
  );

  it.each(['random', 'pct'] as const)(
    '%s: the same backend with its MMU lock passes the same 200 schedules',
    async (scheduler) => {
      const result = await exploreSchedules({
        scenario: faultRacingZap(fixedFactory),
        scheduler,
        schedules: 200,
        seed: 1,
      });
      expect(result.failure).toBeUndefined();
      expect(result).toMatchObject({ ok: true, schedulesRun: 200 });
      expect(result.distinctInterleavings).toBeGreaterThan(10);
    },
  );
});

describe('determinism', () => {
  it('the same seed gives the same schedules, the same failure and byte-identical traces in two explorations', async () => {
    const explore = () =>
      exploreSchedules({
        scenario: faultRacingZap(lockless.factory()),
        scheduler: 'random',
        schedules: 200,
        seed: 5,
      });
    const [a, b] = [await explore(), await explore()];
    expect(a.failure).toBeDefined();
    expect(b.schedulesRun).toBe(a.schedulesRun);
    expect(b.distinctInterleavings).toBe(a.distinctInterleavings);
    expect(b.steps).toBe(a.steps);
    expect(b.failure?.found).toBe(a.failure?.found);
    expect(b.failure?.schedule).toBe(a.failure?.schedule);
    expect(traceText(b.failure?.trace ?? [])).toBe(traceText(a.failure?.trace ?? []));
  });

  it('a passing exploration is reproducible too: same count of steps and interleavings for the same seed', async () => {
    const explore = () =>
      exploreSchedules({ scenario: faultRacingZap(fixedFactory), scheduler: 'pct', schedules: 40, seed: 9 });
    const [a, b] = [await explore(), await explore()];
    expect({ ...b, elapsedMs: 0 }).toEqual({ ...a, elapsedMs: 0 });
  });
});

/** A TD on a fresh module with the scheduler of the run, a 2-vCPU MirrorVmm (locked) running it. */
async function mirrorTd(ctx: ExploreContext) {
  const module = new TdxModule({ tdmr: TDMR }, ctx.services);
  const vmm = await MirrorVmm.create(module, {}, { vcpus: 2 });
  for (const thread of vmm.run()) thread.catch(() => {});
  return ctx.watch({ module, tdr: vmm.td.tdr, vmm });
}

describe('what the explorer reports', () => {
  it('a deadlock: the scenario waits on something nobody will do; the report names where each thread stood', async () => {
    const result = await exploreSchedules({
      scenario: async (ctx) => {
        const td = await mirrorTd(ctx);
        await tdgAccept(td.vmm.td.guest(0), PAGE, 0);
        await new Promise<void>(() => {}); // waits for ever
        return td;
      },
      schedules: 3,
      stallTurns: 200,
      shrink: false,
    });
    expect(result.failure?.kind).toBe('deadlock');
    expect(result.failure?.message).toMatch(
      /no thread can run .* last yield points: .*vcpu0 TDG\.MEM\.PAGE\.ACCEPT locked 0x1000/,
    );
    expect(result.schedulesRun).toBe(1);
  });

  it('a run that never quiesces (a host thread polling for ever) is stopped after maxSteps', async () => {
    const result = await exploreSchedules({
      scenario: async (ctx) => {
        const td = await mirrorTd(ctx);
        const { host, tdr } = td.vmm.td;
        expect(await tdgAccept(td.vmm.td.guest(0), PAGE, 0)).toBe(TdxStatus.SUCCESS);
        // Waits for a page to become FREE that nobody removes, yielding between polls.
        await ctx.spawn('poller', async () => {
          while ((await host.septRead(tdr, PAGE, 0)).status === TdxStatus.SUCCESS)
            await td.module.yieldAt({ flow: 'test.poll', step: 'again', tdr, gpa: PAGE });
        });
        return td;
      },
      schedules: 2,
      maxSteps: 400,
      shrink: false,
    });
    expect(result.failure?.kind).toBe('never-quiescent');
    expect(result.failure?.message).toMatch(
      /no quiescence after 400 scheduling steps .*; waiting: poller test\.poll again 0x1000/,
    );
  });

  it("checkEvery 'step' sees a state broken only between two steps; at quiescence alone it is missed", async () => {
    const scenario = async (ctx: ExploreContext) => {
      const td = await mirrorTd(ctx);
      const control = td.module.state.tds.get(td.tdr);
      if (control === undefined) throw new Error('no TD');
      // A (deliberately) broken host thread: the TD's child count is wrong across one of its yield points.
      await ctx.spawn('corrupter', async () => {
        control.childCount += 1;
        await td.module.yieldAt({ flow: 'test.corrupt', step: 'inside', tdr: td.tdr });
        control.childCount -= 1;
      });
      return td;
    };
    const atQuiescence = await exploreSchedules({ scenario, schedules: 5 });
    expect(atQuiescence.ok).toBe(true);
    const everyStep = await exploreSchedules({ scenario, schedules: 5, checkEvery: 'step' });
    expect(everyStep.failure?.kind).toBe('invariant');
    expect(everyStep.failure?.message).toMatch(/before step \d+ \(.+\): child-count: .*child count/);
  });

  it("the user's property: a failing one is shrunk to the choices that make it fail, and replays", async () => {
    const scenario = faultRacingZap(fixedFactory);
    const sawNoVe = ({ td }: { td: { outcomes: readonly string[] } }) => {
      const reads = JSON.parse(td.outcomes[0] ?? '""') as string;
      return !reads.split(',').includes('ve') || `the reader saw ${reads}`;
    };
    // With the lock, the reader sees its page either before the zap (ok) or after it (#VE: it became PENDING
    // again). The property "the reader never sees a #VE" fails on some interleavings only.
    const result = await exploreSchedules({
      scenario,
      scheduler: 'random',
      schedules: 200,
      seed: 2,
      property: sawNoVe,
    });
    const failure = result.failure;
    if (failure === undefined) throw new Error('the property never failed');
    expect(failure.kind).toBe('property');
    expect(failure.message).toMatch(/^the reader saw .*ve/);
    const replayed = await replaySchedule({
      scenario,
      schedule: failure.schedule,
      seed: 2,
      property: sawNoVe,
    });
    expect(replayed.failure?.kind).toBe('property');
    expect(replayed.traceText).toBe(traceText(failure.trace));
  });

  it('a scenario that throws is a finding, not an exception; progress is reported', async () => {
    const progress: ExploreProgress[] = [];
    const result = await exploreSchedules({
      scenario: async (ctx) => {
        const td = await mirrorTd(ctx);
        if (ctx.index === 3) throw new Error('scenario bug at schedule 3');
        return td;
      },
      scheduler: 'random',
      schedules: 10,
      shrink: false,
      onProgress: (p) => progress.push(p),
    });
    expect(result.failure).toMatchObject({ kind: 'threw', scheduleIndex: 3 });
    expect(result.schedulesRun).toBe(4);
    expect(progress.at(-1)).toMatchObject({ schedulesRun: 4, of: { schedules: 10 } });
  });

  it('bad options throw TestkitError INVALID_OPTION naming the option, before anything runs', async () => {
    const scenario = async (ctx: ExploreContext) => mirrorTd(ctx);
    const cases: [Record<string, unknown>, string][] = [
      [{ scenario: 1 }, 'scenario'],
      [{ scenario, scheduler: 'dfs' }, 'scheduler'],
      [{ scenario, schedules: 0 }, 'schedules'],
      [{ scenario, minutes: -1 }, 'minutes'],
      [{ scenario, seed: 1.5 }, 'seed'],
      [{ scenario, checkEvery: 'always' }, 'checkEvery'],
      [{ scenario, shedules: 3 }, 'shedules'],
    ];
    for (const [options, argument] of cases) {
      await expect(exploreSchedules(options as never)).rejects.toSatisfy(
        (e: unknown) => e instanceof TestkitError && e.code === 'INVALID_OPTION' && e.argument === argument,
      );
    }
    await expect(replaySchedule({ scenario, schedule: 'v2:1' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    // A scenario whose module does not use the run's scheduler explores nothing: that is misuse, said at once.
    const unscheduled = async () => {
      const module = new TdxModule({ tdmr: TDMR });
      const vmm = await MirrorVmm.create(module, {}, { vcpus: 1 });
      return { module, tdr: vmm.td.tdr, vmm };
    };
    await expect(exploreSchedules({ scenario: unscheduled, schedules: 3 })).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof TestkitError && e.argument === 'scenario' && /ctx\.services/.test(e.message),
    );
  });
});

describe('the view check through the safety monitor and the explorer', () => {
  it('a backend whose view matches passes; one whose mirror lost a page is reported by both', async () => {
    const module = new TdxModule({ tdmr: TDMR });
    const vmm = await MirrorVmm.create(module, {}, { vcpus: 1 });
    vmm.run();
    const guest = await TdGuest.boot(vmm.td.guest(0), { memoryBytes: 64 * PAGE, policy: 'strict' });
    expect(await guest.setPrivate(0, 4 * PAGE)).toMatchObject({ kind: 'ok' });
    const monitor = new SafetyMonitor({ module, tdr: vmm.td.tdr, guest, vmm });
    expect(await monitor.check()).toEqual([]);
    // The TD gets a page behind the backend's back (a host thread that bypasses it): its view no longer matches.
    const page = vmm.td.allocator.alloc4k();
    expect((await vmm.td.host.pageAug(vmm.td.tdr, 8 * PAGE, 0, page)).status).toBe(TdxStatus.SUCCESS);
    const violations = await monitor.check();
    expect(violations.map((v) => v.rule)).toEqual(['backend-view']);
    expect(violations[0]?.message).toMatch(
      /the Secure-EPT maps 0x8000 \(4K, PENDING, host page 0x[0-9a-f]+\) but the backend's view has no mapping there/,
    );
  });
});

describe('scenarios wired with composeTd, guests checked against the truth', () => {
  const MIB = 2 ** 20;
  /** composeTd with the run's scheduler and trace: a guest on vCPU 0 converting while vCPU 1 accepts elsewhere. */
  const converting = (vmm: Parameters<typeof composeTd>[0]['vmm']) => async (ctx: ExploreContext) => {
    const { module, td, hosted, guest } = await composeTd({
      vmm,
      build: { gpaw: 48, vcpus: 2 },
      guest: { module: guestModule({ memoryBytes: 4 * MIB, policy: 'strict' }), id: GuestIds.Guest },
      sim: { ...ctx.sim, module: { tdmr: TDMR } },
    });
    const explored = ctx.watch({ module, tdr: td.tdr, vmm: hosted.vmm, guests: [guest] });
    await guest.setPrivate(0, 8 * PAGE);
    await Promise.all([
      guest.setShared(2 * PAGE, 2 * PAGE).then(() => guest.setPrivate(2 * PAGE, 2 * PAGE)),
      tdgAccept(td.guest(1), 8 * MIB, 0), // beyond the guest's RAM: its ledger does not cover it
    ]);
    return explored;
  };

  it('a correct backend (MirrorVmm) and a strict guest: every schedule leaves the ledger equal to the module', async () => {
    const mirror = new ContainerModule(({ bind }) => {
      bind(TdxIds.VmmFactory).toConstantValue(fixedFactory);
    });
    const result = await exploreSchedules({
      scenario: converting(mirror),
      scheduler: 'random',
      schedules: 40,
    });
    expect(result.failure).toBeUndefined();
    expect(result.distinctInterleavings).toBeGreaterThan(20);
  });

  it('a backend that re-AUGs accepted pages behind the guest: the ledger check reports the page', async () => {
    const hostile = hostileVmm('re-aug-accepted');
    if (hostile === undefined) throw new Error('missing catalogue entry');
    const result = await exploreSchedules({
      scenario: converting(hostile.module()),
      schedules: 5,
      shrink: false,
    });
    expect(result.failure?.kind).toBe('ledger');
    expect(result.failure?.message).toMatch(
      /^guest 0: 0x[0-9a-f]+\.\.0x[0-9a-f]+ is private-accepted in the ledger, PENDING \(level 0\) in the module/,
    );
  });
});
