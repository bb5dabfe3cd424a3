import { type GuestCpu, TdxIds, type TraceSink } from '@tdxsim/tdx-module';
import { ContainerModule, type ServiceIdentifier } from 'inversify';
import {
  checkWasmGuestOptions,
  WASM_GUEST_OPTIONS,
  WasmGuest,
  type WasmGuestOptions,
} from './guest/wasm-guest.js';

/** Service identifiers of `@tdxsim/wasm-guest`. */
export const WasmGuestIds = {
  /** The booted wasm guest (resolve with `container.getAsync`: booting starts its worker). */
  Guest: Symbol.for('@tdxsim/wasm-guest/WasmGuest') as ServiceIdentifier<WasmGuest>,
} as const;

/**
 * The inversify module of `@tdxsim/wasm-guest`: binds {@link WasmGuestIds.Guest} as a singleton booted on the vCPU
 * bound to `TdxIds.GuestCpu` — what `guestModule` does for `TdGuest`, so `composeTd` takes either. The trace sink
 * comes from `@tdxsim/tdx-module`'s module when bound.
 */
export function wasmGuestModule(options: Omit<WasmGuestOptions, 'trace'>): ContainerModule {
  // Checked now, before any TD is built; the ranges again at boot, against the GPAW the guest learns.
  checkWasmGuestOptions(
    'wasmGuestModule',
    options,
    WASM_GUEST_OPTIONS.filter((name) => name !== 'trace'),
  );
  return new ContainerModule(({ bind }) => {
    bind(WasmGuestIds.Guest)
      .toResolvedValue(
        async (cpu: GuestCpu, trace: TraceSink | undefined) =>
          WasmGuest.boot(cpu, trace === undefined ? options : { ...options, trace }),
        [TdxIds.GuestCpu, { serviceIdentifier: TdxIds.Trace, optional: true }],
      )
      .inSingletonScope();
  });
}
