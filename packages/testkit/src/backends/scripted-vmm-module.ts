import { TdxIds, type VmmFactory } from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { parseBehaviour } from '../behaviour/parse-behaviour.js';
import type { VmmBehaviour } from '../behaviour/vmm-behaviour.js';
import { checkScriptedOptions, ScriptedVmm, type ScriptedVmmOptions } from './scripted-vmm.js';

/** A {@link VmmFactory} that builds the TD and runs a {@link ScriptedVmm} with `behaviour` on it. */
export function scriptedVmmFactory(behaviour: VmmBehaviour, options: ScriptedVmmOptions = {}): VmmFactory {
  const checked = parseBehaviour(behaviour);
  checkScriptedOptions(options);
  return async (module, build) => {
    const vmm = await ScriptedVmm.create(module, checked, build, options);
    return { vmm, td: vmm.td, run: () => vmm.run() };
  };
}

/**
 * The inversify module of a scripted backend, for `composeTd({ vmm: scriptedVmm(behaviour) })`: binds
 * `TdxIds.VmmFactory` (the behaviour is checked here, at once).
 */
export function scriptedVmm(behaviour: VmmBehaviour, options: ScriptedVmmOptions = {}): ContainerModule {
  const factory = scriptedVmmFactory(behaviour, options);
  return new ContainerModule(({ bind }) => {
    bind(TdxIds.VmmFactory).toConstantValue(factory);
  });
}
