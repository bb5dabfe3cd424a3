import type { ConversionFailure } from '@tdxsim/guest';

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** One line saying why a conversion failed, in the guest's terms. */
export function describeFailure(failure: ConversionFailure): string {
  if (failure.step === 'accept') {
    const f = failure.failure;
    return `accept failed at ${hex(f.acceptedEnd)} (level ${f.level}): ${f.reason === 'fuse' ? 'BUSY without end' : f.statusText}`;
  }
  const f = failure.failure;
  switch (f.kind) {
    case 'status':
      return `MapGPA: the VMM answered ${f.statusName ?? `status ${hex(f.status)} (not a GHCI status)`}`;
    case 'retry-unsupported':
      return `MapGPA: RETRY (R11 ${hex(f.r11)}) and the policy does not retry`;
    case 'r11-out-of-range':
      return `MapGPA: RETRY with R11 ${hex(f.r11)} outside the request`;
    case 'r11-unaligned':
      return `MapGPA: RETRY with unaligned R11 ${hex(f.r11)}`;
    case 'r11-beyond-request':
      return `MapGPA: RETRY with R11 ${hex(f.r11)} beyond the request`;
    case 'no-progress':
      return `MapGPA: ${f.retries} RETRYs without progress`;
    case 'call-bound':
      return `MapGPA: gave up after ${f.calls} calls (the guest's own bound)`;
    case 'would-not-terminate':
      return `MapGPA: ${f.calls} calls and no end (the guest has no bound)`;
    case 'tdcall-failed':
      return `MapGPA: the TDCALL failed with ${hex(f.rax)}`;
  }
}
