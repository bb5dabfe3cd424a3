import {
  type GuestPolicy,
  type GuestPresetName,
  type GuestUnderTest,
  guestPresets,
  TdGuest,
  validateGuestPolicy,
} from '@tdxsim/guest';
import type { GuestFactory } from '@tdxsim/tdx-module';
import { TestkitError } from '../errors.js';

/** What a scenario boots its guest with. */
export interface ScenarioGuestOptions {
  /** Bytes of guest RAM (the workload's `memoryBytes`). */
  readonly memoryBytes: number;
  /**
   * The most hypercalls one conversion may make before a guest without a bound of its own is said not to terminate
   * (the guest's default when absent).
   */
  readonly fuse?: number;
}

/**
 * A guest a scenario can run, whatever it is written in: `TdGuest` with a policy ({@link policyGuest}), or real code
 * compiled to wasm (`@tdxsim/cli`'s `loadGuestRow`). `tdxsim run` makes a row of its matrix of each, the conformance
 * kit drives its workloads with each.
 */
export interface ScenarioGuest {
  /** Its name in reports and scenario ids: a preset's or policy's name, a wasm file's name. */
  readonly name: string;
  /** The guest of one scenario's TD, as `composeTd` takes it. Whoever boots it closes it after (`close?.()`). */
  factory(options: ScenarioGuestOptions): GuestFactory<GuestUnderTest>;
}

/**
 * `TdGuest` with a preset (by name) or a policy of one's own, as a {@link ScenarioGuest} named after it. Throws
 * `TestkitError('INVALID_OPTION')` for an unknown preset or a malformed policy.
 */
export function policyGuest(policy: GuestPresetName | GuestPolicy): ScenarioGuest {
  if (typeof policy === 'string') {
    if (!Object.hasOwn(guestPresets, policy))
      throw new TestkitError(
        'INVALID_OPTION',
        `unknown guest preset "${policy}" (known: ${Object.keys(guestPresets).join(', ')})`,
        'policy',
      );
  } else {
    try {
      validateGuestPolicy(policy, 'policy');
    } catch (error) {
      throw new TestkitError('INVALID_OPTION', `bad guest policy: ${(error as Error).message}`, 'policy');
    }
  }
  const name = typeof policy === 'string' ? policy : policy.name;
  return {
    name,
    factory:
      ({ memoryBytes, fuse }) =>
      (cpu, trace) =>
        TdGuest.boot(cpu, { memoryBytes, policy, trace, ...(fuse === undefined ? {} : { fuse }) }),
  };
}
