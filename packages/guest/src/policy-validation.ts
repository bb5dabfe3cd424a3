import type { AcceptPolicy } from './accept/accept-policy.js';
import { assertKnownOptions, GuestError } from './errors.js';
import type { GuestPolicy } from './guest-policy.js';
import type { MapGpaPolicy } from './map-gpa/map-gpa-policy.js';
import { assertFunction, assertObject, assertOneOf, show } from './validation.js';

/**
 * Checks of user-written policies: a policy is data, and a misspelt or ill-typed field must not be ignored (a
 * missing `noProgressLimit` would make every RETRY loop endless). Each problem is an INVALID_OPTION or
 * UNKNOWN_OPTION GuestError naming the field, e.g. `policy.mapGpa.r11.bounds`.
 */

const MAP_GPA_KEYS = [
  'name',
  'request',
  'onRetry',
  'noProgressLimit',
  'callBound',
  'r11',
  'hypercallBudget',
  'sharedEnd',
  'sharedBit',
];
const R11_KEYS = ['bounds', 'aligned', 'withinRequest', 'pastEnd'];
const ACCEPT_KEYS = ['name', 'levels', 'fallback', 'rememberNo1G', 'alreadyAccepted', 'busyRetries'];

function invalid(argument: string, why: string): never {
  throw new GuestError('INVALID_OPTION', `${argument} ${why}`, argument);
}

function positiveCount(argument: string, value: unknown, allowInfinity: boolean, min: number): void {
  if (allowInfinity && value === Number.POSITIVE_INFINITY) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    invalid(
      argument,
      `must be an integer ≥ ${min}${allowInfinity ? ' or Infinity' : ''}, got ${show(value)}`,
    );
}

function name(argument: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0)
    invalid(argument, `must be a non-empty string, got ${show(value)}`);
}

/** Checks a MapGPA policy (see {@link MapGpaPolicy}); `at` names it in messages. */
export function validateMapGpaPolicy(policy: unknown, at: string): asserts policy is MapGpaPolicy {
  assertObject(at, policy);
  assertKnownOptions(at, policy, MAP_GPA_KEYS, `${at}.`);
  const p = policy as Partial<MapGpaPolicy>;
  name(`${at}.name`, p.name);
  const request = p.request;
  if (request !== 'whole' && typeof request !== 'function') {
    if (typeof request !== 'number' || !Number.isSafeInteger(request) || request <= 0 || request % 4096 !== 0)
      invalid(
        `${at}.request`,
        `must be 'whole', a positive multiple of 4096 or a function, got ${show(request)}`,
      );
  }
  assertOneOf(`${at}.onRetry`, p.onRetry, ['loop', 'fail']);
  positiveCount(`${at}.noProgressLimit`, p.noProgressLimit, true, 1);
  assertFunction(`${at}.callBound`, p.callBound, true);
  assertObject(`${at}.r11`, p.r11);
  assertKnownOptions(`${at}.r11`, p.r11 as object, R11_KEYS, `${at}.r11.`);
  const r11 = p.r11 as Partial<MapGpaPolicy['r11']>;
  assertOneOf(`${at}.r11.bounds`, r11.bounds, ['with-shared-bit', 'without-shared-bit', 'none']);
  assertOneOf(`${at}.r11.aligned`, r11.aligned, [true, false]);
  assertOneOf(`${at}.r11.withinRequest`, r11.withinRequest, [true, false]);
  assertOneOf(`${at}.r11.pastEnd`, r11.pastEnd, ['done', 'continue']);
  if (p.hypercallBudget !== undefined) positiveCount(`${at}.hypercallBudget`, p.hypercallBudget, false, 1);
  if (p.sharedEnd !== undefined) assertOneOf(`${at}.sharedEnd`, p.sharedEnd, ['add', 'or']);
  if (p.sharedBit !== undefined) assertOneOf(`${at}.sharedBit`, p.sharedBit, [47, 51]);
}

/** Checks an accept policy (see {@link AcceptPolicy}). */
export function validateAcceptPolicy(policy: unknown, at: string): asserts policy is AcceptPolicy {
  assertObject(at, policy);
  assertKnownOptions(at, policy, ACCEPT_KEYS, `${at}.`);
  const p = policy as Partial<AcceptPolicy>;
  name(`${at}.name`, p.name);
  const levels = p.levels as unknown;
  if (
    !Array.isArray(levels) ||
    levels.length === 0 ||
    levels.some((level, i) => ![0, 1, 2].includes(level) || (i > 0 && level >= levels[i - 1]))
  ) {
    invalid(`${at}.levels`, `must list levels among 2, 1, 0, largest first, got ${show(levels)}`);
  }
  assertOneOf(`${at}.fallback`, p.fallback, ['any-error', 'size-mismatch', 'size-mismatch-or-invalid']);
  assertOneOf(`${at}.rememberNo1G`, p.rememberNo1G, [true, false]);
  assertOneOf(`${at}.alreadyAccepted`, p.alreadyAccepted, [
    'fail',
    'success',
    'success-exact-4k',
    'success-at-4k',
  ]);
  positiveCount(`${at}.busyRetries`, p.busyRetries, true, 0);
}

/** Checks a whole guest policy. */
export function validateGuestPolicy(policy: unknown, at: string): asserts policy is GuestPolicy {
  assertObject(at, policy);
  assertKnownOptions(at, policy, ['name', 'mapGpa', 'accept', 'onUnrecoverable'], `${at}.`);
  const p = policy as Partial<GuestPolicy>;
  name(`${at}.name`, p.name);
  validateMapGpaPolicy(p.mapGpa, `${at}.mapGpa`);
  validateAcceptPolicy(p.accept, `${at}.accept`);
  if (p.onUnrecoverable !== undefined)
    assertOneOf(`${at}.onUnrecoverable`, p.onUnrecoverable, ['return', 'report-fatal-error']);
}
