import { GUEST_PRESET_NAMES } from '../properties/guest-safety.js';
import {
  ANY_INTEGER,
  assertBackendSource,
  assertFunction,
  assertIntegerOption,
  assertNonEmptyArray,
  assertOneOf,
  assertOptions,
  assertString,
} from '../validation.js';
import type { ConformanceOptions } from './run-conformance.js';
import { SCENARIO_SCHEDULERS } from './scenario-scheduler.js';

const KNOWN = [
  'guests',
  'maxNoProgressRetries',
  'vcpus',
  'seed',
  'wallClockMs',
  'thread',
  'onWorkload',
  'scheduler',
  'scheduleSeed',
];

/**
 * Checks `runConformance`'s arguments (and `vmmConformance`'s, which adds `name`) before any TD is built: the
 * backend's shape, every option's type and range, no unknown option.
 */
export function checkConformanceArguments(
  where: string,
  backend: unknown,
  options: unknown,
  extra: readonly string[] = [],
): asserts options is ConformanceOptions | undefined {
  assertBackendSource('backend', backend);
  assertOptions(where, 'options', options, [...KNOWN, ...extra]);
  const o = (options ?? {}) as Record<string, unknown>;
  if (o.guests !== undefined) {
    assertNonEmptyArray('guests', o.guests);
    (o.guests as unknown[]).forEach((g, i) => {
      // A preset by name, or a ScenarioGuest of one's own ({ name, factory }: a policy, a wasm guest).
      if (typeof g === 'object' && g !== null) {
        assertString(`guests[${i}].name`, (g as { name?: unknown }).name, 'INVALID_OPTION');
        assertFunction(`guests[${i}].factory`, (g as { factory?: unknown }).factory);
      } else {
        assertOneOf(`guests[${i}]`, g, GUEST_PRESET_NAMES);
      }
    });
  }
  assertIntegerOption('maxNoProgressRetries', o.maxNoProgressRetries, 0);
  if (o.vcpus !== undefined) {
    assertNonEmptyArray('vcpus', o.vcpus);
    (o.vcpus as unknown[]).forEach((n, i) => {
      assertIntegerOption(`vcpus[${i}]`, n, 1, 64);
    });
  }
  assertIntegerOption('seed', o.seed, ANY_INTEGER);
  assertIntegerOption('wallClockMs', o.wallClockMs, 0);
  assertOneOf('thread', o.thread, ['dedicated', 'shared'], true);
  assertFunction('onWorkload', o.onWorkload, true);
  assertOneOf('scheduler', o.scheduler, SCENARIO_SCHEDULERS, true);
  assertIntegerOption('scheduleSeed', o.scheduleSeed, ANY_INTEGER);
}
