/**
 * A retry loop's back-off (`VmState.backOff`) resumes in the same microtask order as a plain yield point released with
 * it: when a scheduler lets several parked flows go in one loop (a controlled scheduler's stop(), a test's
 * releaseAll() or failAll()), the flow that backs off resumes after the plain one, as it did when the back-off was an
 * async function. Which flow runs first decides the interleaving, so a schedule replays the same way.
 */
import {
  RandomScheduler,
  type Scheduler,
  SteppingScheduler,
  TdxModule,
  TdxSimError,
  type YieldPoint,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KvmVmm, resolveKvmOptions } from '../src/index.js';
import { VmState } from '../src/vm-state.js';

/** A VM state over a TD built in a module that `scheduler` drives. */
async function vmWith(scheduler: Scheduler): Promise<VmState> {
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } }, { scheduler });
  const kvm = await KvmVmm.create(module, {}, { gpaw: 48, vcpus: 1 });
  return new VmState(module, kvm.td, resolveKvmOptions({}));
}

/**
 * Parks flow A at a back-off and then flow B at a plain yield point, lets `release` end both waits in one loop, and
 * returns the order in which they went on.
 */
async function order(vm: VmState, release: () => void, parked: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const plain: YieldPoint = { flow: 'test.plain', step: 'b', tdr: vm.td.tdr, actor: 'b' };
  const backingOff = (async () => {
    await vm.backOff('kvm.kick', 'vcpu0', undefined).catch(() => undefined);
    seen.push('A');
  })();
  const waiting = (async () => {
    await vm.module.yieldAt(plain)?.catch(() => undefined);
    seen.push('B');
  })();
  await parked();
  release();
  await Promise.all([backingOff, waiting]);
  return seen;
}

describe('VmState.backOff: resumption order among flows released together', () => {
  it('a controlled scheduler stopped with both flows waiting: the plain flow fails first', async () => {
    const scheduler = new RandomScheduler({ seed: 1 });
    const vm = await vmWith(scheduler);
    const seen = await order(
      vm,
      () => scheduler.stop(new TdxSimError('SCHEDULE_STOPPED', 'stopped by the test')),
      async () => undefined,
    );
    scheduler.dispose();
    expect(seen).toEqual(['B', 'A']);
  });

  it.each(['releaseAll', 'failAll'] as const)(
    'a stepping scheduler, %s with both flows parked: the plain flow goes on first',
    async (how) => {
      const scheduler = new SteppingScheduler();
      const vm = await vmWith(scheduler);
      scheduler.pauseWhen((point) => point.flow === 'kvm.kick' || point.flow === 'test.plain');
      const seen = await order(
        vm,
        () => (how === 'releaseAll' ? scheduler.releaseAll() : scheduler.failAll()),
        async () => {
          await scheduler.waitForParked(2);
          // The back-off parked first: released first, it still resumes second.
          expect(scheduler.parked.map((point) => point.flow)).toEqual(['kvm.kick', 'test.plain']);
        },
      );
      expect(seen).toEqual(['B', 'A']);
    },
  );
});
