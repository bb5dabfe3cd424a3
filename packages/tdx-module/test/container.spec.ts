import { Container } from 'inversify';
import { describe, expect, it } from 'vitest';
import {
  buildTd,
  MemoryTraceSink,
  SeededRng,
  SteppingScheduler,
  TdxIds,
  TdxModule,
  TdxSimError,
  tdxModule,
} from '../src/index.js';

describe('tdxModule() container module', () => {
  it('binds the module and its services as singletons that share one clock, scheduler and trace', async () => {
    const trace = new MemoryTraceSink();
    const scheduler = new SteppingScheduler();
    const container = new Container();
    container.load(
      tdxModule({ seed: 7, trace, scheduler, module: { tdmr: { base: 2 ** 34, size: 2 ** 31 } } }),
    );
    const module = container.get(TdxIds.Module);
    expect(module).toBeInstanceOf(TdxModule);
    expect(container.get(TdxIds.Module)).toBe(module);
    expect(container.get(TdxIds.Trace)).toBe(trace);
    expect(container.get(TdxIds.Scheduler)).toBe(scheduler);
    expect(module.clock).toBe(container.get(TdxIds.Clock));
    expect(module.tdmr).toEqual({ base: 2 ** 34, size: 2 ** 31 });
    await buildTd(module);
    expect(trace.events.some((e) => e.kind === 'seamcall' && e.leaf === 'TDH.MR.FINALIZE')).toBe(true);
    expect(module.clock.now()).toBeGreaterThan(0);
  });

  it('seeds the one RNG from the seed, so a seed replays its choices', () => {
    const draw = (seed: number): number[] => {
      const container = new Container();
      container.load(tdxModule({ seed }));
      const rng = container.get(TdxIds.Rng);
      return Array.from({ length: 5 }, () => rng.int(0, 1_000_000));
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(42)).toEqual(
      Array.from(
        { length: 5 },
        (
          (rng) => () =>
            rng.int(0, 1_000_000)
        )(new SeededRng(42)),
      ),
    );
  });

  it('rejects an unknown option with a typed error naming it', () => {
    expect(() => tdxModule({ seeed: 1 } as never)).toThrowError(TdxSimError);
    try {
      tdxModule({ seeed: 1 } as never);
    } catch (error) {
      expect(TdxSimError.is(error) && error.code === 'UNKNOWN_OPTION' && error.argument).toBe('seeed');
    }
  });

  it('accepts a user backend bound without decorators', async () => {
    const container = new Container();
    container.load(tdxModule());
    const vmm = { onTdExit: async () => undefined };
    container.bind(TdxIds.Vmm).toConstantValue(vmm);
    expect(container.get(TdxIds.Vmm)).toBe(vmm);
  });
});
