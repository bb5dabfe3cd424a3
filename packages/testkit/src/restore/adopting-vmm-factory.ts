import { HypervVmm, type HypervVmmOptions } from '@tdxsim/host-hyperv';
import { KvmVmm, type KvmVmmOptions } from '@tdxsim/host-kvm';
import type {
  BuiltTd,
  TdCheckpoint,
  TdxModule,
  TdxModuleServices,
  Vmm,
  VmmFactory,
} from '@tdxsim/tdx-module';
import { TestkitError } from '../errors.js';

/** A backend that took a restored TD over: the module, the TD's handle and the backend, its vCPUs not yet running. */
export interface AdoptedTd {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly vmm: Vmm & {
    /** Starts the vCPUs' host threads (as `HostedTd.run`). */
    run(): Promise<void>[];
  };
}

/**
 * A checkpoint a backend surveyed once and takes over at every restore (what `KvmVmm.adoptCheckpoint` and
 * `HypervVmm.adoptCheckpoint` give): each restore is a new module with `services`, the TD and a backend whose tables
 * start as after its own build. Makes no SEAMCALL.
 */
export interface AdoptedCheckpoint {
  /** A new module in the checkpointed state with `services`, the TD and a backend that took it over. */
  restore(services: TdxModuleServices): AdoptedTd;
}

/**
 * A {@link VmmFactory} that can also take over a TD restored from a checkpoint of one it built, the way it would have
 * built it (same options, same seed): `adoptCheckpoint` answers what each restore needs. Exploration and the race
 * scenarios build the TD once per shape with such a factory and restore it per schedule; with a plain factory they
 * build per schedule.
 */
export interface AdoptingVmmFactory extends VmmFactory {
  /** Surveys `checkpoint` (a TD this factory built, checkpointed before its vCPUs ran) once for the restores. */
  readonly adoptCheckpoint: (checkpoint: TdCheckpoint) => Promise<AdoptedCheckpoint>;
}

/**
 * `factory` with the ability to adopt a checkpoint of a TD it built: `adopt` must give, at every restore, the backend
 * `factory` would have left after its build (e.g. `(c) => KvmVmm.adoptCheckpoint(c, options)` for a factory that calls
 * `KvmVmm.create(module, options, build)`). A new function: `factory` is left as it was.
 */
export function adoptingVmmFactory(
  factory: VmmFactory,
  adopt: (checkpoint: TdCheckpoint) => Promise<AdoptedCheckpoint>,
): AdoptingVmmFactory {
  if (typeof factory !== 'function')
    throw new TestkitError(
      'INVALID_ARGUMENT',
      'factory must be a VmmFactory (module, build) => ...',
      'factory',
    );
  if (typeof adopt !== 'function')
    throw new TestkitError('INVALID_ARGUMENT', 'adopt must be a function (checkpoint) => ...', 'adopt');
  const made = ((module, build) => factory(module, build)) as VmmFactory & {
    adoptCheckpoint?: AdoptingVmmFactory['adoptCheckpoint'];
  };
  made.adoptCheckpoint = adopt;
  return made as AdoptingVmmFactory;
}

/** Whether `factory` can adopt a checkpoint (see {@link AdoptingVmmFactory}). */
export function canAdopt(factory: VmmFactory): factory is AdoptingVmmFactory {
  return typeof (factory as Partial<AdoptingVmmFactory>).adoptCheckpoint === 'function';
}

/** The KVM backend with `options` as an {@link AdoptingVmmFactory} (`KvmVmm.create`, `KvmVmm.adoptCheckpoint`). */
export function kvmVmmFactory(options: KvmVmmOptions = {}): AdoptingVmmFactory {
  return adoptingVmmFactory(
    async (module, build) => {
      const vmm = await KvmVmm.create(module, options, build);
      return { vmm, td: vmm.td, run: () => vmm.run() };
    },
    (checkpoint) => KvmVmm.adoptCheckpoint(checkpoint, options),
  );
}

/** The Hyper-V backend with `options` as an {@link AdoptingVmmFactory} (`HypervVmm.create`, `HypervVmm.adoptCheckpoint`). */
export function hypervVmmFactory(options: HypervVmmOptions = {}): AdoptingVmmFactory {
  return adoptingVmmFactory(
    async (module, build) => {
      const vmm = await HypervVmm.create(module, options, build);
      return { vmm, td: vmm.td, run: () => vmm.run() };
    },
    (checkpoint) => HypervVmm.adoptCheckpoint(checkpoint, options),
  );
}
