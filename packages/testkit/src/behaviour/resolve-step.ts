import { TdvmcallStatus } from '@tdxsim/tdx-module';
import { objectArray } from '../object-array.js';
import { assertInteger, assertOptions, assertU64 } from '../validation.js';
import { parseStep } from './parse-behaviour.js';
import type { MapGpaStep, SideEffect } from './vmm-behaviour.js';

const PAGE = 4096n;
const U64 = (1n << 64n) - 1n;

/** A well-formed MapGPA request as the VMM received it (R12 carries the direction in its shared bit). */
export interface MapGpaRequest {
  readonly r12: bigint;
  readonly r13: bigint;
  /** The TD's shared bit (1 << (GPAW − 1)). */
  readonly sharedBit: bigint;
}

/** What a step means for one request: pages to convert, the reply registers and the side effects. */
export interface ResolvedStep {
  /** Pages to convert from R12's frame on; more than the request holds for `{ extra }`. */
  readonly convertPages: number;
  /** How many of those lie inside the request. */
  readonly withinRequest: number;
  readonly r10: bigint;
  readonly r11: bigint;
  readonly effects: readonly SideEffect[];
}

/** Resolves `step` against `request`; `maxPages` caps what one call converts (it keeps a hostile script cheap). */
export function resolveStep(step: MapGpaStep, request: MapGpaRequest, maxPages: number): ResolvedStep {
  parseStep(step, 'step');
  assertOptions('resolveStep', 'request', request, ['r12', 'r13', 'sharedBit'], false);
  assertU64('request.r12', request.r12);
  assertU64('request.r13', request.r13);
  assertU64('request.sharedBit', request.sharedBit);
  assertInteger('maxPages', maxPages, 1, 2 ** 40);
  return resolveParsedStep(step, request, maxPages);
}

/**
 * @internal {@link resolveStep} without its checks, for a caller whose step is one of a parsed (or generated)
 * behaviour and whose request it built itself from a well-formed MapGPA exit (the scripted backend, once per MapGPA
 * call of every fuzz case: the checks, a parse of the step among them, cost more than the resolution).
 */
export function resolveParsedStep(step: MapGpaStep, request: MapGpaRequest, maxPages: number): ResolvedStep {
  const asked = Number(request.r13 / PAGE);
  const wanted =
    step.convert === 'all'
      ? asked
      : step.convert === 'none'
        ? 0
        : 'upTo' in step.convert
          ? Math.min(step.convert.upTo, asked)
          : 'missing' in step.convert
            ? Math.max(0, asked - step.convert.missing)
            : asked + step.convert.extra;
  const convertPages = Math.min(wanted, maxPages);
  const withinRequest = Math.min(convertPages, asked);
  const r10 =
    step.status === 'auto'
      ? withinRequest === asked
        ? TdvmcallStatus.SUCCESS
        : TdvmcallStatus.RETRY
      : typeof step.status === 'string'
        ? TdvmcallStatus[step.status]
        : BigInt(step.status.raw);
  const { r12, r13, sharedBit } = request;
  const next = r12 + BigInt(withinRequest) * PAGE;
  let r11: bigint;
  const choice = step.r11;
  if (choice === 'next') r11 = r10 === TdvmcallStatus.SUCCESS ? 0n : next;
  else if (choice === 'start') r11 = r12;
  else if (choice === 'end') r11 = r12 + r13;
  else if (choice === 'zero') r11 = 0n;
  else if (choice === 'shared-bit-flipped') r11 = next ^ sharedBit;
  else if ('below' in choice) r11 = r12 - BigInt(choice.below) * PAGE;
  else if ('pastEnd' in choice) r11 = r12 + r13 + BigInt(choice.pastEnd) * PAGE;
  else if ('unaligned' in choice) r11 = next + BigInt(choice.unaligned);
  else r11 = BigInt(choice.raw);
  // No effects: an empty list of the generated lists' elements kind (a `[]` literal is another hidden class, and the
  // scripted backend's MapGPA handler, optimised on one of them, was thrown away when a case showed it the other).
  return {
    convertPages,
    withinRequest,
    r10,
    r11: r11 & U64,
    effects: step.effects ?? objectArray<SideEffect>(),
  };
}
