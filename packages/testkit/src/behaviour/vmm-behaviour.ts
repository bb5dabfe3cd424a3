import { TestkitError } from '../errors.js';
import { assertInteger, show } from '../validation.js';

/**
 * A VMM's MapGPA behaviour as plain data: a short script of per-call steps. Every value is JSON (64-bit numbers are
 * hex strings), so a failing property prints a script that can be pasted back to replay it. The named hostile
 * backends are such scripts, and the arbitraries generate them.
 */

/** A GHCI status by name (reference guest-and-vmm.md §1.2). */
export type GhciStatusName =
  | 'SUCCESS'
  | 'RETRY'
  | 'INVALID_OPERAND'
  | 'GPA_INUSE'
  | 'ALIGN_ERROR'
  | 'SUBFUNC_UNSUPPORTED';

/** A 64-bit value written as a hex string, e.g. `'0x8000000000000007'`. */
export type Hex64 = `0x${string}`;

/**
 * What R10 says: `'auto'` is the honest answer (SUCCESS once every page asked for is converted, else RETRY), a GHCI
 * status by name, or any 64-bit value (possibly outside the GHCI set).
 */
export type StatusChoice = 'auto' | GhciStatusName | { readonly raw: Hex64 };

/**
 * Where R11 points, relative to the call (R12 = start with the direction bit, R13 = size):
 * - `'next'`: R12 + the pages converted inside the request (the honest resume GPA); 0 with SUCCESS;
 * - `'start'`: R12 (no progress); `'end'`: R12 + R13; `'zero'`: 0;
 * - `'shared-bit-flipped'`: the honest value with the shared bit flipped;
 * - `{ below: n }`: n pages below R12; `{ pastEnd: n }`: n pages past R12 + R13;
 * - `{ unaligned: b }`: the honest value plus b bytes (1..4095);
 * - `{ raw }`: any 64-bit value.
 */
export type R11Choice =
  | 'next'
  | 'start'
  | 'end'
  | 'zero'
  | 'shared-bit-flipped'
  | { readonly below: number }
  | { readonly pastEnd: number }
  | { readonly unaligned: number }
  | { readonly raw: Hex64 };

/**
 * How many pages from R12 the VMM really converts before it answers: `'all'` of the request, `'none'`,
 * `{ upTo: n }` (at most n pages of the request: an honest chunk), `{ missing: n }` (n pages fewer than asked) or
 * `{ extra: n }` (the request and n pages past its end: more than asked).
 */
export type ConvertChoice =
  | 'all'
  | 'none'
  | { readonly upTo: number }
  | { readonly missing: number }
  | { readonly extra: number };

/**
 * Side effects of a call, on top of the reply:
 * - `'tamper-accepted'`: BLOCK → TRACK → REMOVE a private page the guest accepted (outside the request), then AUG
 *   it again: the guest finds it PENDING on its next access;
 * - `'alias-shared-pair'`: to shared, map the request's second page to the first page's host page (one host page
 *   in the shared EPT twice);
 * - `'map-td-page'`: to shared, map the request's first page to a host page the TD owns;
 * - `'keep-private'`: to shared, map the shared side without removing the private page.
 */
export type SideEffect = 'tamper-accepted' | 'alias-shared-pair' | 'map-td-page' | 'keep-private';

/** Every {@link SideEffect}, for arbitraries and tables. */
export const SIDE_EFFECTS: readonly SideEffect[] = [
  'tamper-accepted',
  'alias-shared-pair',
  'map-td-page',
  'keep-private',
];

/** What the VMM does for one MapGPA call. */
export interface MapGpaStep {
  readonly convert: ConvertChoice;
  readonly status: StatusChoice;
  readonly r11: R11Choice;
  readonly effects?: readonly SideEffect[];
}

/**
 * A MapGPA behaviour: `steps` taken call by call, then, once they run out, `'cycle'` starts over and
 * `'repeat-last'` keeps the last; `'seeded'` picks a step at random for every call (from `seed`), so the same
 * request can get different answers. Requests a real VMM must refuse (zero size, a wrap, beyond GPAW, mixing
 * shared and private, unaligned) are always answered as KVM answers them, whatever the script.
 */
export interface VmmBehaviour {
  readonly steps: readonly MapGpaStep[];
  readonly order: 'cycle' | 'repeat-last' | 'seeded';
  /** Seed of the `'seeded'` order (default 1). */
  readonly seed?: number;
}

/** The honest step: convert everything asked for and answer SUCCESS. */
export const HONEST_STEP: MapGpaStep = { convert: 'all', status: 'auto', r11: 'next' };

/** The honest behaviour: every call converts the whole request and answers SUCCESS. */
export const HONEST_BEHAVIOUR: VmmBehaviour = { steps: [HONEST_STEP], order: 'cycle' };

/** An honest chunked step: at most `pages` pages per call, RETRY with R11 = the next GPA until done. */
export function chunkStep(pages: number): MapGpaStep {
  assertInteger('pages', pages, 1, 2 ** 20);
  return { convert: { upTo: pages }, status: 'auto', r11: 'next' };
}

/** The no-progress step: converts nothing, RETRY with R11 = R12 (Hyper-V does this at times, reference §4.1). */
export const NO_PROGRESS_STEP: MapGpaStep = { convert: 'none', status: 'RETRY', r11: 'start' };

/** The behaviour as one line of JSON (what a failing property prints). */
export function formatBehaviour(behaviour: VmmBehaviour): string {
  if (typeof behaviour !== 'object' || behaviour === null || !Array.isArray(behaviour.steps))
    throw new TestkitError(
      'INVALID_BEHAVIOUR',
      `behaviour must be a VmmBehaviour ({ steps, order, seed? }), got ${show(behaviour)}`,
      'behaviour',
    );
  try {
    return JSON.stringify(behaviour);
  } catch (error) {
    // A bigint or a cycle: not a script that parseBehaviour could read back.
    throw new TestkitError(
      'INVALID_BEHAVIOUR',
      `behaviour is not JSON: ${(error as Error).message}`,
      'behaviour',
    );
  }
}
