import { type GuestCpu, TdxIds, type TraceSink } from '@tdxsim/tdx-module';
import { ContainerModule, type ServiceIdentifier } from 'inversify';
import { assertKnownOptions } from './errors.js';
import { TdGuest, type TdGuestOptions } from './td-guest.js';

/** Service identifiers of `@tdxsim/guest`. */
export const GuestIds = {
  /** The booted guest (resolve with `container.getAsync`: booting runs TDG.VP.INFO). */
  Guest: Symbol.for('@tdxsim/guest/TdGuest') as ServiceIdentifier<TdGuest>,
  /** The vCPU the guest runs its conversions on: the module's identifier, bound by composeTd or the user. */
  Cpu: TdxIds.GuestCpu,
} as const;

/**
 * The inversify module of `@tdxsim/guest`: binds {@link GuestIds.Guest} as a singleton booted on the vCPU bound to
 * {@link GuestIds.Cpu}, with these options (the trace sink comes from `@tdxsim/tdx-module`'s module when bound).
 */
export function guestModule(options: Omit<TdGuestOptions, 'trace'>): ContainerModule {
  assertKnownOptions('guestModule', options, ['memoryBytes', 'initialImage', 'policy', 'fuse']);
  return new ContainerModule(({ bind }) => {
    bind(GuestIds.Guest)
      .toResolvedValue(
        async (cpu: GuestCpu, trace: TraceSink | undefined) =>
          TdGuest.boot(cpu, trace === undefined ? options : { ...options, trace }),
        [GuestIds.Cpu, { serviceIdentifier: TdxIds.Trace, optional: true }],
      )
      .inSingletonScope();
  });
}
