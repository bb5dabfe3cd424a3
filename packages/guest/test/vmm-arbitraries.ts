/**
 * Generators for the property tests of the guest: honest VMM behaviours (chunk sizes, no-progress streaks) and
 * scripted, possibly hostile, MapGPA replies, described as data and resolved against each call the guest makes.
 */

import { TdvmcallStatus } from '@tdxsim/tdx-module';
import { fc } from '../../../test/property-test.js';
import type { MapGpaCall, ScriptedReply } from './test-vmm.js';

export const PAGE = 4096;
const BIG_PAGE = BigInt(PAGE);
const U64 = (1n << 64n) - 1n;

/** One conversion the test asks of the guest: pages [startPage, startPage + pages), to shared or to private. */
export interface ConversionSpec {
  readonly startPage: number;
  readonly pages: number;
  readonly toShared: boolean;
}

/** A sequence of page-aligned conversions inside a RAM of `memPages` pages (random sub-ranges, random direction). */
export function conversionsArb(memPages: number, maxLength: number): fc.Arbitrary<ConversionSpec[]> {
  const one = fc
    .record({
      startPage: fc.integer({ min: 0, max: memPages - 1 }),
      length: fc.integer({ min: 1, max: memPages }),
      toShared: fc.boolean(),
    })
    .map(({ startPage, length, toShared }) => ({
      startPage,
      pages: Math.min(length, memPages - startPage),
      toShared,
    }));
  return fc.array(one, { minLength: 1, maxLength });
}

/** Pages added with TDH.MEM.PAGE.ADD at build (accepted from the start), or none. */
export function initialImageArb(memPages: number): fc.Arbitrary<{ startPage: number; pages: number } | null> {
  return fc.option(
    fc
      .record({ startPage: fc.integer({ min: 0, max: memPages - 1 }), pages: fc.integer({ min: 1, max: 4 }) })
      .map(({ startPage, pages }) => ({ startPage, pages: Math.min(pages, memPages - startPage) })),
    { nil: null },
  );
}

/** Whether the guest accepts all its memory before converting (a quarter of the runs: it costs 1 AUG a page). */
export const acceptFirstArb: fc.Arbitrary<boolean> = fc.oneof(
  { arbitrary: fc.constant(false), weight: 3 },
  { arbitrary: fc.constant(true), weight: 1 },
);

/**
 * The global MapGPA call indices that answer RETRY without progress, with never more than `maxStreak` in a row
 * (the budget of strict and linux is 3: the 3rd consecutive no-progress RETRY fails).
 */
export function noProgressArb(maxStreak: number, maxLength = 96): fc.Arbitrary<number[]> {
  return fc.array(fc.boolean(), { maxLength }).map((flags) => {
    const indices: number[] = [];
    let streak = 0;
    flags.forEach((flag, index) => {
      if (flag && streak < maxStreak) {
        indices.push(index);
        streak++;
      } else {
        streak = 0;
      }
    });
    return indices;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Scripted replies

/** Where R11 points, relative to the call (R12 = start, R13 = size). */
export type R11Spec =
  /** R11 = R12: no progress. */
  | { readonly kind: 'start' }
  /** A page boundary strictly inside the request. */
  | { readonly kind: 'inside'; readonly k: number }
  /** R12 + R13: the end of the request. */
  | { readonly kind: 'end' }
  /** The start of the request's last page. */
  | { readonly kind: 'last-page' }
  /** Below R12. */
  | { readonly kind: 'below'; readonly pages: number }
  /** Past the end of the request. */
  | { readonly kind: 'beyond'; readonly pages: number }
  /** Inside the request but not 4K-aligned. */
  | { readonly kind: 'unaligned'; readonly k: number; readonly offset: number }
  /** A page inside the request with the shared bit flipped. */
  | { readonly kind: 'flipped'; readonly k: number }
  /** A value at or above 2^52 (beyond any GPAW). */
  | { readonly kind: 'huge'; readonly value: bigint }
  /** Any 64-bit value. */
  | { readonly kind: 'raw'; readonly value: bigint };

/** How many pages from R12 the VMM really converts before answering. */
export type ConvertSpec =
  | { readonly kind: 'none' }
  /** Every page of the request. */
  | { readonly kind: 'asked' }
  /** Up to R11 (what a RETRY with this R11 claims), none when R11 is below R12. */
  | { readonly kind: 'as-r11' }
  /** A fixed number of pages (fewer or more than asked). */
  | { readonly kind: 'some'; readonly pages: number }
  /** More than asked: the request and `extra` pages past its end. */
  | { readonly kind: 'more'; readonly extra: number };

export interface ReplySpec {
  readonly r10: bigint;
  readonly r11: R11Spec;
  readonly convert: ConvertSpec;
}

const GHCI_ERRORS = [
  TdvmcallStatus.INVALID_OPERAND,
  TdvmcallStatus.GPA_INUSE,
  TdvmcallStatus.ALIGN_ERROR,
  TdvmcallStatus.SUBFUNC_UNSUPPORTED,
] as const;

export const r10Arb: fc.Arbitrary<bigint> = fc.oneof(
  { arbitrary: fc.constant(TdvmcallStatus.RETRY), weight: 6 },
  { arbitrary: fc.constant(TdvmcallStatus.SUCCESS), weight: 3 },
  { arbitrary: fc.constantFrom(...GHCI_ERRORS), weight: 2 },
  { arbitrary: fc.bigInt({ min: 0n, max: U64 }), weight: 1 },
);

export const r11Arb: fc.Arbitrary<R11Spec> = fc.oneof(
  { arbitrary: fc.constant({ kind: 'start' as const }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('inside' as const), k: fc.nat(63) }), weight: 4 },
  fc.constant({ kind: 'end' as const }),
  fc.constant({ kind: 'last-page' as const }),
  fc.record({ kind: fc.constant('below' as const), pages: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant('beyond' as const), pages: fc.integer({ min: 1, max: 4 }) }),
  fc.record({
    kind: fc.constant('unaligned' as const),
    k: fc.nat(63),
    offset: fc.integer({ min: 1, max: PAGE - 1 }),
  }),
  fc.record({ kind: fc.constant('flipped' as const), k: fc.nat(63) }),
  fc.record({ kind: fc.constant('huge' as const), value: fc.bigInt({ min: 1n << 52n, max: U64 }) }),
  fc.record({ kind: fc.constant('raw' as const), value: fc.bigInt({ min: 0n, max: U64 }) }),
);

export const convertArb: fc.Arbitrary<ConvertSpec> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.constant({ kind: 'asked' as const }),
  { arbitrary: fc.constant({ kind: 'as-r11' as const }), weight: 2 },
  fc.record({ kind: fc.constant('some' as const), pages: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('more' as const), extra: fc.integer({ min: 1, max: 4 }) }),
);

export const replyArb: fc.Arbitrary<ReplySpec> = fc.record({ r10: r10Arb, r11: r11Arb, convert: convertArb });

/**
 * A VMM script: replies by MapGPA call index (cycled by the test VMM's script), each possibly repeated up to 3
 * times in a row so that streaks (no-progress RETRYs, the same lie again) are common.
 */
export const scriptArb: fc.Arbitrary<ReplySpec[]> = fc
  .array(fc.record({ reply: replyArb, times: fc.integer({ min: 1, max: 3 }) }), {
    minLength: 1,
    maxLength: 8,
  })
  .map((steps) => steps.flatMap(({ reply, times }) => Array.from({ length: times }, () => reply)));

/** What the script needs to know about the TD. */
export interface ScriptContext {
  /** The shared bit of the TD's GPAW. */
  readonly shared: bigint;
  /** Top of guest RAM: the VMM converts nothing at or past it (the test VMM has no memory there). */
  readonly ramEnd: number;
}

/**
 * How the scripted VMM relates what it does to what it says:
 * - `'arbitrary'`: reply and conversion are independent (a VMM may answer SUCCESS and convert nothing);
 * - `'acknowledging'`: the VMM really converts at least what its reply acknowledges (SUCCESS: the whole request;
 *   RETRY with R11's frame inside [R12, R12 + R13]: every page up to R11, a partial page included), and anything
 *   else on top, including none past that and more than asked. Only under this model can a guest be asked to
 *   "never report a page converted that is not": a SUCCESS that converts nothing fools every guest.
 */
export type ScriptMode = 'arbitrary' | 'acknowledging';

/** A reply resolved against one call, with the pages the VMM converts and those outside the request. */
export interface ResolvedReply {
  readonly reply: Required<ScriptedReply>;
  /** Pages (4K frame numbers) converted outside [R12, R12 + R13): behind the guest's back. */
  readonly outsideRequest: readonly number[];
}

function r11Of(spec: R11Spec, call: MapGpaCall, shared: bigint): bigint {
  const asked = call.r13 / BIG_PAGE;
  const pageIn = (k: number): bigint => (asked > 0n ? BigInt(k) % asked : 0n) * BIG_PAGE;
  switch (spec.kind) {
    case 'start':
      return call.r12;
    case 'inside':
      return asked >= 2n ? call.r12 + (1n + (BigInt(spec.k) % (asked - 1n))) * BIG_PAGE : call.r12;
    case 'end':
      return (call.r12 + call.r13) & U64;
    case 'last-page':
      return (call.r12 + call.r13 - BIG_PAGE) & U64;
    case 'below':
      return (call.r12 - BigInt(spec.pages) * BIG_PAGE) & U64;
    case 'beyond':
      return (call.r12 + call.r13 + BigInt(spec.pages) * BIG_PAGE) & U64;
    case 'unaligned':
      return (call.r12 + pageIn(spec.k) + BigInt(spec.offset)) & U64;
    case 'flipped':
      return ((call.r12 + pageIn(spec.k)) & U64) ^ shared;
    case 'huge':
    case 'raw':
      return spec.value;
  }
}

/** Pages from R12 up to `r11` (a partial page counted), when R11's frame is at or above R12's. */
function pagesUpTo(r11: bigint, r12: bigint, shared: bigint): bigint {
  const from = r12 & ~shared;
  const to = r11 & ~shared;
  return to > from ? (to - from + BIG_PAGE - 1n) / BIG_PAGE : 0n;
}

/** Resolves `spec` against the guest's call: R10, R11, and how many pages the VMM converts from R12. */
export function resolveReply(
  spec: ReplySpec,
  call: MapGpaCall,
  context: ScriptContext,
  mode: ScriptMode,
): ResolvedReply {
  const { shared, ramEnd } = context;
  let r10 = spec.r10;
  let r11 = r11Of(spec.r11, call, shared);
  const asked = call.r13 / BIG_PAGE;
  let pages: bigint;
  switch (spec.convert.kind) {
    case 'none':
      pages = 0n;
      break;
    case 'asked':
      pages = asked;
      break;
    case 'as-r11':
      pages = pagesUpTo(r11, call.r12, shared);
      break;
    case 'some':
      pages = BigInt(spec.convert.pages);
      break;
    case 'more':
      pages = asked + BigInt(spec.convert.extra);
      break;
  }
  const start = call.r12 & ~shared;
  // The test VMM converts whole pages from R12: it cannot start at an unaligned R12 or outside RAM.
  const convertible = call.r12 % BIG_PAGE === 0n && start < BigInt(ramEnd);
  if (mode === 'acknowledging') {
    let acknowledged = 0n;
    if (r10 === TdvmcallStatus.SUCCESS) acknowledged = asked;
    else if (r10 === TdvmcallStatus.RETRY && (r11 & ~shared) <= start + call.r13)
      acknowledged = pagesUpTo(r11, call.r12, shared);
    if (acknowledged > 0n && !convertible) {
      // It cannot do what it would acknowledge: it answers as KVM does to an unaligned start.
      r10 = TdvmcallStatus.ALIGN_ERROR;
      r11 = call.r12;
    } else if (acknowledged > pages) {
      pages = acknowledged;
    }
  }
  if (!convertible) pages = 0n;
  const room = convertible ? (BigInt(ramEnd) - start) / BIG_PAGE : 0n;
  const convertPages = Number(pages < room ? pages : room);
  const outsideRequest: number[] = [];
  const firstFrame = Number(start / BIG_PAGE);
  for (let i = asked < BigInt(convertPages) ? Number(asked) : convertPages; i < convertPages; i++)
    outsideRequest.push(firstFrame + i);
  return { reply: { r10, r11, convertPages }, outsideRequest };
}
