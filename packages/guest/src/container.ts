import { type GuestCpu, TdxIds, type TraceSink } from '@tdxsim/tdx-module';
import { ContainerModule, type ServiceIdentifier } from 'inversify';
import { assertKnownOptions } from './errors.js';
import { TdGuest, type TdGuestOptions } from './td-guest.js';
import { assertObject } from './validation.js';

/** Service identifiers of `@tdxsim/guest`. */
export const GuestIds = {
  /** The booted guest (resolve with `container.getAsync`: booting runs TDG.VP.INFO). */
  Guest: Symbol.for('@tdxsim/guest/TdGuest') as ServiceIdentifier<TdGuest>,
  /** The vCPU the guest runs its conversions on by default: the module's identifier, bound by composeTd or the user. */
  Cpu: TdxIds.GuestCpu,
  /** Every vCPU of the TD (optional; composeTd binds it): when bound, the guest serves them all. */
  Cpus: TdxIds.GuestCpus,
} as const;

/**
 * The inversify module of `@tdxsim/guest`: binds {@link GuestIds.Guest} as a singleton booted on every vCPU bound to
 * {@link GuestIds.Cpus} when that is bound (composeTd binds it), else on the vCPU bound to {@link GuestIds.Cpu}, with
 * these options (the trace sink comes from `@tdxsim/tdx-module`'s module when bound).
 */
export function guestModule(options: Omit<TdGuestOptions, 'trace'>): ContainerModule {
  assertObject('options', options);
  assertKnownOptions('guestModule', options, ['memoryBytes', 'initialImage', 'policy', 'fuse']);
  return new ContainerModule(({ bind }) => {
    bind(GuestIds.Guest)
      .toResolvedValue(
        async (cpu: GuestCpu, cpus: readonly GuestCpu[] | undefined, trace: TraceSink | undefined) =>
          TdGuest.boot(
            cpus !== undefined && cpus.length > 0 ? cpus : cpu,
            trace === undefined ? options : { ...options, trace },
          ),
        [
          GuestIds.Cpu,
          { serviceIdentifier: GuestIds.Cpus, optional: true },
          { serviceIdentifier: TdxIds.Trace, optional: true },
        ],
      )
      .inSingletonScope();
  });
}
