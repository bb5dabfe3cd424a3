import { ContainerModule, type ServiceIdentifier } from 'inversify';
import type { VmmFactory } from './compose.js';
import { TdxIds } from './container.js';
import { TdxSimError } from './errors.js';
import { type BuiltTd, buildTd } from './host/td-builder.js';
import type { TraceSink } from './services/trace.js';
import type { GuestCpu, TdxModule } from './tdx-module.js';
import type { Vmm } from './vmm-port.js';

/** A backend class constructed as `new X(module, td)` on a TD built with `buildTd`: all a backend author writes. */
export type VmmClass = new (module: TdxModule, td: BuiltTd) => Vmm;

/**
 * A VMM backend in any of its three shapes: a {@link VmmClass}, a {@link VmmFactory} function, or a `ContainerModule`
 * that binds `TdxIds.VmmFactory` (`kvmVmm()`, `hypervVmm()`). Only the last needs inversify.
 */
export type BackendSource = ContainerModule | VmmFactory | VmmClass;

/**
 * Boots a guest on the vCPU the TD gives it, e.g. `(cpu) => TdGuest.boot(cpu, { memoryBytes, policy })`; `cpus` is
 * every vCPU of the TD (vCPU 0 first), for a guest that serves them all (`(_cpu, trace, cpus) => TdGuest.boot(cpus,
 * ...)`).
 */
export type GuestFactory<G> = (cpu: GuestCpu, trace: TraceSink, cpus: readonly GuestCpu[]) => G | Promise<G>;

/** A guest class constructed as `new X(cpu)` on the vCPU the TD gives it. */
export type GuestClass<G> = new (cpu: GuestCpu) => G;

/**
 * A guest in any of its three shapes: a {@link GuestFactory}, a {@link GuestClass}, or a `ContainerModule` with the
 * identifier to resolve it by (`{ module: guestModule({...}), id: GuestIds.Guest }`).
 */
export type GuestSource<G> =
  | { readonly module: ContainerModule; readonly id: ServiceIdentifier<G> }
  | GuestFactory<G>
  | GuestClass<G>;

/** Classes stringify as `class …`; a function whose prototype has `method` is a class in all but syntax. */
function isClass(source: unknown, method?: string): boolean {
  if (typeof source !== 'function') return false;
  if (/^class[\s{]/.test(Function.prototype.toString.call(source))) return true;
  const prototype = (source as { prototype?: Record<string, unknown> }).prototype;
  return method !== undefined && typeof prototype?.[method] === 'function';
}

/** Whether `value` is a ContainerModule, from this copy of inversify or another one. */
function isContainerModule(value: unknown): value is ContainerModule {
  if (value instanceof ContainerModule) return true;
  return (
    typeof value === 'object' && value !== null && typeof (value as { load?: unknown }).load === 'function'
  );
}

/**
 * The one normaliser of backend shapes: a ContainerModule binding `TdxIds.VmmFactory`, as `composeTd` loads
 * it. A class is constructed on a TD that `buildTd` built; a factory is bound as it is.
 */
export function toVmmModule(source: BackendSource): ContainerModule {
  if (isContainerModule(source)) return source;
  if (typeof source !== 'function') {
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `expected a ContainerModule, a VmmFactory or a Vmm class, got ${source === null ? 'null' : typeof source}`,
      'vmm',
    );
  }
  const factory: VmmFactory = isClass(source, 'onTdExit')
    ? async (module, build) => {
        const td = await buildTd(module, build);
        const vmm = new (source as VmmClass)(module, td);
        if (typeof vmm.onTdExit !== 'function') {
          throw new TdxSimError('INVALID_ARGUMENT', `${source.name} has no onTdExit method`, 'vmm');
        }
        return { vmm, td, run: () => td.run(vmm) };
      }
    : (source as VmmFactory);
  return new ContainerModule(({ bind }) => {
    bind(TdxIds.VmmFactory).toConstantValue(factory);
  });
}

/** A name for reports: the class's or function's name, else `'backend'`. */
export function backendName(source: BackendSource): string {
  return typeof source === 'function' && source.name !== '' ? source.name : 'backend';
}

/**
 * Boots the guest of `source` on the TD's vCPUs (`cpus[0]` for a class): resolves it from its module, calls its
 * factory or constructs its class.
 */
export async function bootGuest<G>(
  source: GuestSource<G>,
  cpus: readonly GuestCpu[],
  trace: TraceSink,
  load: (module: ContainerModule, id: ServiceIdentifier<G>) => Promise<G>,
): Promise<G> {
  if (typeof source === 'object' && source !== null && isContainerModule(source.module)) {
    return load(source.module, source.id);
  }
  if (typeof source !== 'function') {
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `expected { module, id }, a guest factory or a guest class, got ${source === null ? 'null' : typeof source}`,
      'guest',
    );
  }
  const cpu = cpus[0] as GuestCpu;
  if (isClass(source)) return new (source as GuestClass<G>)(cpu);
  return (source as GuestFactory<G>)(cpu, trace, cpus);
}
