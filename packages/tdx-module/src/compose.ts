import { Container, type ContainerModule } from 'inversify';
import { type BackendSource, bootGuest, type GuestSource, toVmmModule } from './backend-source.js';
import { TdxIds, type TdxModuleContainerOptions, tdxModule } from './container.js';
import { assertKnownOptions, assertObject, TdxSimError } from './errors.js';
import type { BuildTdOptions, BuiltTd } from './host/td-builder.js';
import type { TraceSink } from './services/trace.js';
import type { TdxModule } from './tdx-module.js';
import type { Vmm } from './vmm-port.js';

/** A backend with the TD it built and runs. */
export interface HostedTd<V extends Vmm = Vmm> {
  readonly vmm: V;
  readonly td: BuiltTd;
  /** Starts the vCPUs' host threads. */
  run(): Promise<void>[];
}

/** Builds a TD on `module` the backend's way and returns the backend; bound to {@link TdxIds.VmmFactory}. */
export type VmmFactory = (module: TdxModule, build: BuildTdOptions) => Promise<HostedTd>;

/**
 * What {@link composeTd} wires together: the backend, optionally the guest, the TD's shape and the
 * simulation's options.
 */
export interface ComposeOptions<G> {
  /**
   * The backend: a `Vmm` class (`new X(module, td)`), a {@link VmmFactory}, or a ContainerModule that binds
   * `TdxIds.VmmFactory` such as `kvmVmm({...})`.
   */
  readonly vmm: BackendSource;
  /**
   * The guest: a factory such as `(cpu) => TdGuest.boot(cpu, {...})`, a class (`new X(cpu)`), or its ContainerModule
   * and the identifier to resolve it by, e.g. `{ module: guestModule({...}), id: GuestIds.Guest }`.
   */
  readonly guest?: GuestSource<G>;
  /** How the TD is built (GPAW, vCPUs, initial image). */
  readonly build?: BuildTdOptions;
  /** Seed, module options, scheduler, trace sink of the simulation. */
  readonly sim?: TdxModuleContainerOptions;
}

/** A ready TD: the container and everything in it, typed. */
export interface ComposedTd<G> {
  readonly container: Container;
  readonly module: TdxModule;
  readonly hosted: HostedTd;
  readonly td: BuiltTd;
  readonly trace: TraceSink;
  /**
   * The vCPUs' host threads. Each settles when its thread ends; a thread that fails (a backend that throws) rejects
   * here and nowhere else: the guest waiting on that vCPU gets VCPU_NOT_RESUMED.
   */
  readonly threads: readonly Promise<void>[];
  /** The booted guest, when a guest module was given. */
  readonly guest: G;
}

/**
 * One call to a ready TD: loads the module, the backend and the guest into an inversify container (a backend or guest
 * given as a class or a factory needs no inversify of its own), has the backend build the TD through SEAMCALLs, binds
 * vCPU 0 to {@link TdxIds.GuestCpu} and every vCPU to {@link TdxIds.GuestCpus}, starts the vCPUs and boots the guest.
 * Users who wire things themselves do the same with a plain `Container` (see the package README).
 */
export async function composeTd<G = undefined>(options: ComposeOptions<G>): Promise<ComposedTd<G>> {
  assertObject('options', options);
  assertKnownOptions('composeTd', options, ['vmm', 'guest', 'build', 'sim']);
  // Every shape is checked before anything is built: the backend's (toVmmModule), the guest's, the build's; the
  // simulation's options (seed, scheduler, trace, module) by tdxModule() below, the build's details by buildTd.
  const vmmModule = toVmmModule(options.vmm);
  if (options.guest !== undefined && typeof options.guest !== 'function') {
    assertObject('guest', options.guest);
    assertKnownOptions('composeTd', options.guest, ['module', 'id']);
    if (!isContainerModule(options.guest.module))
      throw new TdxSimError('INVALID_ARGUMENT', 'guest.module must be a ContainerModule', 'guest.module');
    if (options.guest.id === undefined)
      throw new TdxSimError('INVALID_ARGUMENT', 'guest.id is missing', 'guest.id');
  }
  assertObject('build', options.build, true);
  const container = new Container();
  container.load(tdxModule(options.sim ?? {}), vmmModule);
  if (!container.isBound(TdxIds.VmmFactory)) {
    throw new TdxSimError('INVALID_ARGUMENT', 'the vmm module binds no TdxIds.VmmFactory', 'vmm');
  }
  const module = container.get(TdxIds.Module);
  const hosted = await container.get(TdxIds.VmmFactory)(module, options.build ?? {});
  container.bind(TdxIds.Vmm).toConstantValue(hosted.vmm);
  container.bind(TdxIds.GuestCpu).toConstantValue(hosted.td.guest(0));
  const cpus = hosted.td.tdvprs.map((_tdvpr, index) => hosted.td.guest(index));
  container.bind(TdxIds.GuestCpus).toConstantValue(cpus);
  const threads = hosted.run();
  // Handled here so that a backend that throws on its host thread fails the guest, not the process.
  for (const thread of threads) thread.catch(() => {});
  let guest: G = undefined as G;
  if (options.guest !== undefined) {
    guest = await bootGuest(options.guest, cpus, container.get(TdxIds.Trace), (module, id) => {
      container.load(module);
      return container.getAsync(id);
    });
  }
  return { container, module, hosted, td: hosted.td, trace: container.get(TdxIds.Trace), threads, guest };
}

/** An inversify ContainerModule, also from another copy of inversify (it has a numeric id and a load method). */
function isContainerModule(value: unknown): value is ContainerModule {
  const candidate = value as Partial<ContainerModule> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.id === 'number' &&
    typeof candidate.load === 'function'
  );
}
