import { TdxIds } from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { KvmVmm } from './kvm-vmm.js';
import { type KvmVmmOptions, resolveKvmOptions } from './options.js';

/** The inversify module of the KVM backend: binds {@link TdxIds | TdxIds.VmmFactory} (options checked here, at once). */
export function kvmVmm(options: KvmVmmOptions = {}): ContainerModule {
  resolveKvmOptions(options);
  return new ContainerModule(({ bind }) => {
    bind(TdxIds.VmmFactory).toConstantValue(async (module, build) => {
      const vmm = await KvmVmm.create(module, options, build);
      return { vmm, td: vmm.td, run: () => vmm.run() };
    });
  });
}
