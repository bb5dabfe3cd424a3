import { runAcceptRange } from '../accept/accept-range.js';
import type { CpuPort } from '../concurrency/cpu-port.js';
import { GuestError } from '../errors.js';
import type { GuestState } from '../guest-state.js';
import type { PageState } from '../ledger/page-ledger.js';
import { PAGE } from '../range.js';
import { assertInteger, show } from '../validation.js';

/** The GPA space's end (GPAW 52) and the most bytes one load or store may move. */
const MAX_GPA = 2 ** 52;
const MAX_ACCESS = 2 ** 30;

/** How a guest load or store ended. */
export type GuestAccess =
  | { readonly kind: 'ok'; readonly data: Uint8Array }
  | {
      readonly kind: 'fault';
      /**
       * `not-private`: the page is shared or outside RAM; `in-conversion`: a conversion of the page is in flight, so
       * it is not private memory until that ends; `quarantined`: the guest does not use it; `tampered`: a page the
       * guest had accepted came back PENDING (the VMM removed and re-added it), now quarantined; `accept-failed`: the
       * lazy accept failed, page quarantined; `double-fault` / `page-fault`: as the module says.
       */
      readonly reason:
        | 'not-private'
        | 'in-conversion'
        | 'quarantined'
        | 'tampered'
        | 'accept-failed'
        | 'double-fault'
        | 'page-fault';
      readonly gpa: number;
    };

/** The fault for a page whose ledger state makes it unusable as private memory, or undefined when it is usable. */
function unusable(state: PageState | undefined, gpa: number): GuestAccess | undefined {
  if (state === 'quarantined') return { kind: 'fault', reason: 'quarantined', gpa };
  if (state === 'converting') return { kind: 'fault', reason: 'in-conversion', gpa };
  if (state === undefined || state === 'shared') return { kind: 'fault', reason: 'not-private', gpa };
  return undefined;
}

/** What one load or store moves: `length` bytes loaded, or `data` stored. */
export type AccessRequest = { readonly length: number } | { readonly data: Uint8Array };

/**
 * A load or store of private memory on `port`, page by page: each page is checked against the ledger (a page in
 * conversion fails at once), held shared against conversions for the access, and accepted on first touch (the #VE
 * path). A TDCALL that never comes back is thrown once the page is quarantined.
 */
export async function accessMemory(
  state: GuestState,
  port: CpuPort,
  gpa: number,
  request: AccessRequest,
): Promise<GuestAccess> {
  return accessByPage(gpa, request, (at, n, piece) => accessPage(state, port, at, n, piece));
}

/** The access's arguments as a caller gave them: a GuestError naming the bad one, before any page is touched. */
function checkAccess(gpa: unknown, request: AccessRequest): number {
  assertInteger('gpa', gpa, 0, MAX_GPA - 1);
  let length: number;
  if (typeof request === 'object' && request !== null && 'data' in request) {
    const { data } = request;
    if (!(data instanceof Uint8Array) || data.length === 0 || data.length > MAX_ACCESS)
      throw new GuestError(
        'INVALID_ARGUMENT',
        `data must be a Uint8Array of 1 to ${MAX_ACCESS} bytes, got ${show(data)}`,
        'data',
      );
    length = data.length;
  } else {
    length = (request as { length?: unknown } | undefined)?.length as number;
    assertInteger('length', length, 1, MAX_ACCESS);
  }
  if (gpa + length > MAX_GPA)
    throw new GuestError(
      'INVALID_ARGUMENT',
      'the access reaches beyond 2^52',
      'data' in request ? 'data' : 'length',
    );
  return length;
}

/**
 * A load (`{ length }`) or store (`{ data }`) at `gpa`, cut at 4 KiB page boundaries: `accessOnePage` runs for each
 * piece in address order (with its slice of `data` for a store) and the first fault ends the access. The loop every
 * guest's memory access shares, whatever handles the page (`TdGuest`'s #VE path, a wasm guest's accept); it checks
 * the caller's arguments first (GuestError `INVALID_ARGUMENT` naming `gpa`, `length` or `data`).
 */
export async function accessByPage(
  gpa: number,
  request: AccessRequest,
  accessOnePage: (gpa: number, length: number, data: Uint8Array | undefined) => Promise<GuestAccess>,
): Promise<GuestAccess> {
  const length = checkAccess(gpa, request);
  const data = 'data' in request ? request.data : undefined;
  const out = new Uint8Array(length);
  for (let done = 0; done < length; ) {
    const at = gpa + done;
    const n = Math.min(PAGE - (at % PAGE), length - done);
    const piece = await accessOnePage(at, n, data?.subarray(done, done + n));
    if (piece.kind === 'fault') return piece;
    out.set(piece.data, done);
    done += n;
  }
  return { kind: 'ok', data: data ?? out };
}

async function accessPage(
  state: GuestState,
  port: CpuPort,
  gpa: number,
  length: number,
  data: Uint8Array | undefined,
): Promise<GuestAccess> {
  const { ledger } = state;
  const page = gpa - (gpa % PAGE);
  const early = unusable(ledger.stateOf(page), gpa);
  if (early !== undefined) return early;
  const release = await state.locks.acquire({ start: page, end: page + PAGE }, 'shared');
  try {
    const now = ledger.stateOf(page);
    const late = unusable(now, gpa);
    if (late !== undefined) return late;
    // A #VE on a page this access already knew accepted means the VMM took it away: tampering.
    let acceptedSeen = now === 'private-accepted';
    for (let round = 0; round < 3; round++) {
      const result = await port.access(gpa, length, data);
      if (result.kind === 'ok') return result;
      if (result.kind === 'double-fault' || result.kind === 'page-fault')
        return { kind: 'fault', reason: result.kind, gpa };
      // #VE (its information already read and cleared on this vCPU): handle it as a kernel would.
      const seen = ledger.stateOf(page);
      if (seen === 'private-accepted') {
        if (acceptedSeen) break;
        // Another vCPU accepted the page between this access's start and its #VE: just retry.
        acceptedSeen = true;
        continue;
      }
      const fault = unusable(seen, page);
      if (fault !== undefined) return fault;
      if (await lazyAccept(state, port, page)) {
        acceptedSeen = true;
        continue;
      }
      if (ledger.stateOf(page) === 'private-accepted' && !acceptedSeen) {
        // This vCPU's ACCEPT lost to another's (BUSY past the policy's retries): the other one accepted the page.
        acceptedSeen = true;
        continue;
      }
      state.transition({ start: page, end: page + PAGE }, 'quarantined');
      return { kind: 'fault', reason: 'accept-failed', gpa: page };
    }
    // Accepted before, PENDING now: the VMM removed and re-added the page behind the guest's back.
    state.transition({ start: page, end: page + PAGE }, 'quarantined');
    return { kind: 'fault', reason: 'tampered', gpa: page };
  } finally {
    release();
  }
}

/**
 * The #VE handler's accept of one 4K page. Several vCPUs may take a #VE on the same page at once and each accepts it
 * (as real #VE handlers on different CPUs would): the module lets one win; the others see BUSY (retried within the
 * policy's budget) or PAGE_ALREADY_ACCEPTED, which is not an error when this guest accepted the page — its ledger
 * says so, or one of its own earlier accepts of the page succeeded. Resolves true when the page is accepted.
 */
async function lazyAccept(state: GuestState, port: CpuPort, page: number): Promise<boolean> {
  const { ledger } = state;
  const earlier = [...(state.lazyAccepts.get(page) ?? [])];
  // Resolves with this accept's own answer (true: its ACCEPT succeeded) as soon as it is known.
  let settle: (accepted: boolean) => void = () => undefined;
  const mine = new Promise<boolean>((resolve) => {
    settle = resolve;
  });
  state.lazyAccepts.set(page, [...earlier, mine]);
  try {
    const outcome = await runAcceptRange(
      port,
      { start: page, end: page + PAGE },
      state.policy.accept,
      state.acceptMemory,
      state.fuse,
      {
        // Only earlier accepts are awaited: two that both see ALREADY_ACCEPTED never wait for each other.
        acceptedByUs: async () =>
          ledger.stateOf(page) === 'private-accepted' || (await Promise.all(earlier)).some(Boolean),
      },
    );
    if (outcome.kind === 'ok') {
      // The module's SUCCESS vouches for the page, unless another handler gave it up meanwhile (quarantine sticks).
      const accepted =
        ledger.stateOf(page) === 'private-unaccepted' || ledger.stateOf(page) === 'private-accepted';
      if (accepted) state.transition({ start: page, end: page + PAGE }, 'private-accepted');
      settle(accepted);
      return accepted;
    }
    if (outcome.kind === 'interrupted' && outcome.interruption.kind === 'vcpu-lost') {
      settle(false);
      state.transition({ start: page, end: page + PAGE }, 'quarantined');
      throw outcome.interruption.error;
    }
    // Lost to another accept of the same page still under way (BUSY past the policy's retries): its answer is this
    // one's, as Linux waits for an accept of the same range in progress on another CPU. This accept's own answer is
    // settled first, so two that failed never wait for each other.
    settle(false);
    const others = (state.lazyAccepts.get(page) ?? []).filter((other) => other !== mine);
    return (await Promise.all(others)).some(Boolean);
  } finally {
    settle(false);
    const list = (state.lazyAccepts.get(page) ?? []).filter((p) => p !== mine);
    if (list.length === 0) state.lazyAccepts.delete(page);
    else state.lazyAccepts.set(page, list);
  }
}
