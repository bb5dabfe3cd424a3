import { type BuiltTd, buildTd, TdxIds, type TdxModule, type Vmm, type VmmFactory } from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { TestkitError } from '../errors.js';

/** A backend class constructed as `new X(module, td)` on a TD built with `buildTd` (like MyVmm in the README). */
export type VmmClass = new (module: TdxModule, td: BuiltTd) => Vmm;

/**
 * A VMM backend in any of the three shapes the testkit takes: a ContainerModule that binds `TdxIds.VmmFactory`
 * (`kvmVmm()`, `hypervVmm()`, `scriptedVmm(...)`), a {@link VmmFactory} function, or a {@link VmmClass}.
 */
export type BackendSource = ContainerModule | VmmFactory | VmmClass;

function isClass(source: VmmFactory | VmmClass): source is VmmClass {
  // Classes (native syntax) stringify as `class ...`; a function whose prototype has onTdExit is one in all but name.
  const prototype = (source as { prototype?: { onTdExit?: unknown } }).prototype;
  return (
    /^class[\s{]/.test(Function.prototype.toString.call(source)) || typeof prototype?.onTdExit === 'function'
  );
}

/** The one normaliser of backend shapes: a ContainerModule binding `TdxIds.VmmFactory`, for `composeTd`. */
export function toVmmModule(source: BackendSource): ContainerModule {
  if (source instanceof ContainerModule) return source;
  if (typeof source === 'object' && source !== null && 'load' in source) return source;
  if (typeof source !== 'function') {
    throw new TestkitError(
      'INVALID_BACKEND',
      `expected a ContainerModule, a VmmFactory or a Vmm class, got ${source === null ? 'null' : typeof source}`,
      'backend',
    );
  }
  const factory: VmmFactory = isClass(source)
    ? async (module, build) => {
        const td = await buildTd(module, build);
        const vmm = new source(module, td);
        if (typeof vmm.onTdExit !== 'function')
          throw new TestkitError('INVALID_BACKEND', `${source.name} has no onTdExit method`, 'backend');
        return { vmm, td, run: () => td.run(vmm) };
      }
    : source;
  return new ContainerModule(({ bind }) => {
    bind(TdxIds.VmmFactory).toConstantValue(factory);
  });
}

/** A name for reports: the class's or function's name, else `'backend'`. */
export function backendName(source: BackendSource): string {
  return typeof source === 'function' && source.name !== '' ? source.name : 'backend';
}
