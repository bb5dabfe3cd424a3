import { type ModuleConfig, ModuleState } from '../core/module-state.js';
import { assertKnownOptions, assertObject } from '../errors.js';
import { VirtualClock } from '../services/clock.js';
import { RunToCompletionScheduler } from '../services/scheduler.js';
import { NullTraceSink } from '../services/trace.js';
import type { TdxModule, TdxModuleOptions, TdxModuleServices } from '../tdx-module.js';
import { copyModuleState } from './copy-module-state.js';
import { assertQuiescent } from './quiescence.js';

/** @internal How a checkpoint makes the module it restores (given by TdxModule: no import cycle). */
export type ModuleFactory = (options: TdxModuleOptions, services: TdxModuleServices) => TdxModule;

/**
 * The whole state of a quiescent {@link TdxModule}, copied: PAMT, memory contents, every TD (TDR/TDCS fields, the
 * measurement, S-EPT with its entries, vCPUs' TDVPS data), shared EPTs, HKIDs in use, the virtual time, and the
 * options the module was made with. Made by {@link TdxModule.checkpoint}; {@link ModuleCheckpoint.restore} makes as
 * many identical modules from it as wanted. Neither the module checkpointed nor a restored one shares any mutable
 * state with the checkpoint: changing one never changes another.
 *
 * Not captured: code in flight (a checkpoint refuses a module that has any — see {@link TdxModule.checkpoint}), the
 * services (a restored module gets the ones {@link ModuleCheckpoint.restore} is given, by default a fresh trace sink and
 * run-to-completion scheduler), the host processors' NMI records, and anything outside the module (a backend's own
 * tables, a guest's ledger).
 */
export class ModuleCheckpoint {
  readonly #options: TdxModuleOptions;
  readonly #state: ModuleState;
  readonly #time: number;
  readonly #make: ModuleFactory;

  /** @internal Made by {@link TdxModule.checkpoint}. */
  constructor(options: TdxModuleOptions, state: ModuleState, externalWork: number, make: ModuleFactory) {
    assertQuiescent(state, externalWork);
    this.#options = options;
    this.#make = make;
    this.#time = state.clock.now();
    this.#state = detachedState(state.config);
    copyModuleState(state, this.#state);
  }

  /** The virtual time (ns) when the checkpoint was taken: a restored module's clock starts there by default. */
  get time(): number {
    return this.#time;
  }

  /**
   * A new module in exactly the state checkpointed, with the checkpointed module's options and the given services:
   * by default a {@link VirtualClock} at {@link time}, the run-to-completion scheduler and no trace. The module is
   * independent of the checkpoint and of every other module restored from it.
   */
  restore(services: TdxModuleServices = {}): TdxModule {
    assertObject('services', services);
    assertKnownOptions('restore', services, ['clock', 'scheduler', 'trace']);
    const clock = services.clock ?? new VirtualClock();
    if (services.clock === undefined) clock.advance(this.#time);
    const module = this.#make(this.#options, { ...services, clock });
    copyModuleState(this.#state, module.state);
    return module;
  }
}

/** A module state that no flow runs on: where a checkpoint keeps its copy. */
function detachedState(config: ModuleConfig): ModuleState {
  return new ModuleState(config, new VirtualClock(), new RunToCompletionScheduler(), new NullTraceSink());
}
