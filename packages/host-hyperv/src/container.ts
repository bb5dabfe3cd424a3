import { TdxIds } from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { HypervVmm } from './hyperv-vmm.js';
import { type HypervVmmOptions, resolveHypervOptions } from './options.js';

/** The inversify module of the Hyper-V backend: binds {@link TdxIds | TdxIds.VmmFactory}. */
export function hypervVmm(options: HypervVmmOptions = {}): ContainerModule {
  resolveHypervOptions(options);
  return new ContainerModule(({ bind }) => {
    bind(TdxIds.VmmFactory).toConstantValue(async (module, build) => {
      const vmm = await HypervVmm.create(module, options, build);
      return { vmm, td: vmm.td, run: () => vmm.run() };
    });
  });
}
