/**
 * Why an operation stopped before its end without a status from the module or the VMM:
 * - `aborted`: the caller's AbortSignal fired; the operation stopped before its next TDCALL;
 * - `vcpu-lost`: a TDCALL never came back (the vCPU's host thread ended, the VMM stopped entering it, or the
 *   simulator gave up on a stuck guest): `error` is what the module threw.
 */
export type Interruption =
  | { readonly kind: 'aborted'; readonly reason: unknown }
  | { readonly kind: 'vcpu-lost'; readonly error: unknown };

/** The interruption for an aborted `signal`, or undefined while it is not aborted. */
export function abortedBy(signal: AbortSignal | undefined): Interruption | undefined {
  return signal?.aborted === true ? { kind: 'aborted', reason: signal.reason } : undefined;
}
