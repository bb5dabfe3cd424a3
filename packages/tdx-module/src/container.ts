import { ContainerModule, type ServiceIdentifier } from 'inversify';
import type { VmmFactory } from './compose.js';
import {
  assertHasMethod,
  assertIntegerInRange,
  assertKnownOptions,
  assertObject,
  assertOneOf,
} from './errors.js';
import { type Clock, VirtualClock } from './services/clock.js';
import { type Rng, SeededRng } from './services/rng.js';
import { RunToCompletionScheduler, type Scheduler } from './services/scheduler.js';
import { NullTraceSink, type TraceSink } from './services/trace.js';
import type { GuestCpu } from './tdx-module.js';
import { TdxModule, type TdxModuleOptions } from './tdx-module.js';
import type { Vmm } from './vmm-port.js';

/** Service identifiers of `@tdxsim/tdx-module`, shared by every package that wires a simulation. */
export const TdxIds = {
  Module: Symbol.for('@tdxsim/tdx-module/TdxModule') as ServiceIdentifier<TdxModule>,
  Clock: Symbol.for('@tdxsim/tdx-module/Clock') as ServiceIdentifier<Clock>,
  Rng: Symbol.for('@tdxsim/tdx-module/Rng') as ServiceIdentifier<Rng>,
  Scheduler: Symbol.for('@tdxsim/tdx-module/Scheduler') as ServiceIdentifier<Scheduler>,
  Trace: Symbol.for('@tdxsim/tdx-module/TraceSink') as ServiceIdentifier<TraceSink>,
  /** The VMM backend bound for the simulation; host packages (or users) bind it. */
  Vmm: Symbol.for('@tdxsim/tdx-module/Vmm') as ServiceIdentifier<Vmm>,
  /** Builds a TD the backend's way (bound by a backend's ContainerModule, used by composeTd). */
  VmmFactory: Symbol.for('@tdxsim/tdx-module/VmmFactory') as ServiceIdentifier<VmmFactory>,
  /** The vCPU the guest runs on (bound once the TD exists). */
  GuestCpu: Symbol.for('@tdxsim/tdx-module/GuestCpu') as ServiceIdentifier<GuestCpu>,
  /** Every vCPU of the TD, in index order (bound by composeTd): a guest that serves them all boots on these. */
  GuestCpus: Symbol.for('@tdxsim/tdx-module/GuestCpus') as ServiceIdentifier<readonly GuestCpu[]>,
} as const;

/**
 * Options of {@link tdxModule}: the seed, the module's options and replacements for the scheduler and trace
 * sink.
 */
export interface TdxModuleContainerOptions {
  /** Seed of the one RNG of the simulation. Default 1. */
  readonly seed?: number;
  /** Options of the {@link TdxModule} the container makes. */
  readonly module?: TdxModuleOptions;
  /** Replace the default (run-to-completion) scheduler. */
  readonly scheduler?: Scheduler;
  /** Replace the default (discarding) trace sink. */
  readonly trace?: TraceSink;
}

/**
 * The inversify module of `@tdxsim/tdx-module`: binds the clock, the seeded RNG, the scheduler, the trace sink and
 * the TdxModule itself, all as singletons. Bind a backend to {@link TdxIds.Vmm} next to it.
 */
export function tdxModule(options: TdxModuleContainerOptions = {}): ContainerModule {
  assertKnownOptions('tdxModule', options, ['seed', 'module', 'scheduler', 'trace']);
  assertObject('module', options.module, true);
  if (options.scheduler !== undefined) assertHasMethod('scheduler', options.scheduler, 'yieldAt');
  if (options.trace !== undefined) {
    assertHasMethod('trace', options.trace, 'record');
    assertOneOf('trace.enabled', options.trace.enabled, [true, false]);
  }
  const seed = options.seed ?? 1;
  // Checked here too (SeededRng would say the same), so that nothing is bound with a bad seed.
  assertIntegerInRange('seed', seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const rng = new SeededRng(seed);
  return new ContainerModule(({ bind }) => {
    bind(TdxIds.Clock).toConstantValue(new VirtualClock());
    bind(TdxIds.Rng).toConstantValue(rng);
    bind(TdxIds.Scheduler).toConstantValue(options.scheduler ?? new RunToCompletionScheduler());
    bind(TdxIds.Trace).toConstantValue(options.trace ?? new NullTraceSink());
    bind(TdxIds.Module)
      .toResolvedValue(
        (clock: Clock, scheduler: Scheduler, trace: TraceSink) =>
          new TdxModule(options.module ?? {}, { clock, scheduler, trace }),
        [TdxIds.Clock, TdxIds.Scheduler, TdxIds.Trace],
      )
      .inSingletonScope();
  });
}
