import fc from 'fast-check';
import {
  type ConvertChoice,
  chunkStep,
  type GhciStatusName,
  type Hex64,
  HONEST_STEP,
  type MapGpaStep,
  NO_PROGRESS_STEP,
  type R11Choice,
  SIDE_EFFECTS,
  type SideEffect,
  type StatusChoice,
  type VmmBehaviour,
} from '../behaviour/vmm-behaviour.js';
import { objectArray } from '../object-array.js';
import { assertIntegerOption, assertOneOf, assertOptions } from '../validation.js';
import { recordDraws } from './record-draws.js';

const GHCI_NAMES: readonly GhciStatusName[] = [
  'SUCCESS',
  'RETRY',
  'INVALID_OPERAND',
  'GPA_INUSE',
  'ALIGN_ERROR',
  'SUBFUNC_UNSUPPORTED',
];

const hex64: fc.Arbitrary<Hex64> = fc
  .bigInt({ min: 0n, max: (1n << 64n) - 1n })
  .map((value) => `0x${value.toString(16)}` as Hex64);

/** R10 choices: mostly the honest one and the GHCI statuses, sometimes any 64-bit value. */
export const statusChoice: fc.Arbitrary<StatusChoice> = fc.oneof(
  { arbitrary: fc.constant('auto' as const), weight: 4 },
  { arbitrary: fc.constant('RETRY' as const), weight: 3 },
  { arbitrary: fc.constantFrom(...GHCI_NAMES), weight: 2 },
  { arbitrary: hex64.map((raw) => ({ raw })), weight: 1 },
);

/** R11 choices: the honest value and no progress most often, then every way to lie about it. */
export const r11Choice: fc.Arbitrary<R11Choice> = fc.oneof(
  { arbitrary: fc.constant('next' as const), weight: 6 },
  { arbitrary: fc.constant('start' as const), weight: 3 },
  fc.constantFrom('end' as const, 'zero' as const, 'shared-bit-flipped' as const),
  fc.integer({ min: 1, max: 4 }).map((below) => ({ below })),
  fc.integer({ min: 1, max: 4 }).map((pastEnd) => ({ pastEnd })),
  fc.integer({ min: 1, max: 4095 }).map((unaligned) => ({ unaligned })),
  hex64.map((raw) => ({ raw })),
);

/** How much a call really converts: all, nothing, an honest chunk, fewer or more than asked. */
export const convertChoice: fc.Arbitrary<ConvertChoice> = fc.oneof(
  { arbitrary: fc.constant('all' as const), weight: 3 },
  { arbitrary: fc.constant('none' as const), weight: 2 },
  { arbitrary: fc.integer({ min: 1, max: 8 }).map((upTo) => ({ upTo })), weight: 3 },
  fc.integer({ min: 1, max: 3 }).map((missing) => ({ missing })),
  fc.integer({ min: 1, max: 3 }).map((extra) => ({ extra })),
);

/**
 * The same effects in a packed list: `fc.subarray` sometimes answers a holey list (its result is built by a map),
 * another hidden class where a step's effects are read (the step mapper below and the scripted backend's MapGPA
 * handler were thrown away and compiled again when a late case showed them one).
 */
function packedEffects(effects: readonly SideEffect[]): SideEffect[] {
  const packed = objectArray<SideEffect>();
  for (const effect of effects) packed.push(effect);
  return packed;
}

/** Side effects, rare: most steps have none. */
export const sideEffects: fc.Arbitrary<SideEffect[]> = fc.oneof(
  // Pre-typed like the subarrays beside it, so the step mapper below sees one array hidden class.
  { arbitrary: fc.constant(objectArray<SideEffect>()), weight: 6 },
  {
    // The unmapper lets a caller-supplied list shrink (`fc.subarray` itself checks that it is one of its answers).
    arbitrary: fc
      .subarray([...SIDE_EFFECTS], { minLength: 1 })
      .map(packedEffects, (value) => value as SideEffect[]),
    weight: 1,
  },
);

/** Any step, honest or not. */
export const mapGpaStep: fc.Arbitrary<MapGpaStep> = recordDraws(
  convertChoice,
  statusChoice,
  r11Choice,
  sideEffects,
).map(([convert, status, r11, effects]) =>
  // Built field by field (no rest or spread): a campaign maps every step it draws.
  effects.length === 0 ? { convert, status, r11 } : { convert, status, r11, effects },
);

/** Options of the behaviour arbitraries: how long a generated script may be. */
export interface BehaviourArbitraryOptions {
  /** Most steps in a script (default 4). */
  readonly maxSteps?: number;
}

/** Checks the arbitraries' options: `maxSteps` an integer in [1, 64], nothing else. */
function checkArbitraryOptions(where: string, options: unknown, extra: readonly string[] = []): void {
  assertOptions(where, 'options', options, ['maxSteps', ...extra]);
  assertIntegerOption('maxSteps', (options as BehaviourArbitraryOptions | undefined)?.maxSteps, 1, 64);
}

/**
 * Honest behaviours: scripts of honest chunks (1 to 16 pages, or all) and RETRYs without progress, cycled, never
 * more than two no-progress RETRYs in a row (wrapping around the cycle included), so a Linux-like guest (which fails
 * on the 3rd, reference guest-and-vmm.md §2.1) always completes.
 */
export function honestBehaviour(options: BehaviourArbitraryOptions = {}): fc.Arbitrary<VmmBehaviour> {
  checkArbitraryOptions('honestBehaviour', options);
  const step = fc.oneof(
    { arbitrary: fc.constant(HONEST_STEP), weight: 2 },
    { arbitrary: fc.integer({ min: 1, max: 16 }).map(chunkStep), weight: 4 },
    { arbitrary: fc.constant(NO_PROGRESS_STEP), weight: 2 },
  );
  return fc
    .array(step, { minLength: 1, maxLength: options.maxSteps ?? 4 })
    .map((steps) => ({ steps: boundNoProgress(steps), order: 'cycle' as const }));
}

/** Replaces no-progress steps that would make a third in a row (cyclically) with one-page chunks. */
function boundNoProgress(steps: readonly MapGpaStep[]): MapGpaStep[] {
  const out = [...steps];
  if (out.every((s) => s === NO_PROGRESS_STEP)) out[0] = chunkStep(1);
  let streak = 0;
  for (let i = 0; i < out.length * 2; i++) {
    const at = i % out.length;
    if (out[at] !== NO_PROGRESS_STEP) streak = 0;
    else if (++streak > 2) {
      out[at] = chunkStep(1);
      streak = 0;
    }
  }
  return out;
}

/** Hostile behaviours: any steps (statuses, R11, conversions, side effects), in any order, seeded. */
export function hostileBehaviour(options: BehaviourArbitraryOptions = {}): fc.Arbitrary<VmmBehaviour> {
  checkArbitraryOptions('hostileBehaviour', options);
  return recordDraws(
    fc.array(mapGpaStep, { minLength: 1, maxLength: options.maxSteps ?? 4 }),
    fc.constantFrom('cycle' as const, 'repeat-last' as const, 'seeded' as const),
    fc.integer({ min: 1, max: 2 ** 16 }),
  ).map(([steps, order, seed]) => ({ steps, order, seed }));
}

/** VMM behaviours: honest ones, hostile ones, or either (the default). */
export function vmmBehaviour(
  options: BehaviourArbitraryOptions & { readonly hostile?: boolean } = {},
): fc.Arbitrary<VmmBehaviour> {
  checkArbitraryOptions('vmmBehaviour', options, ['hostile']);
  assertOneOf('hostile', options.hostile, [true, false], true);
  const { hostile: _, ...steps } = options;
  options = steps;
  if (_ === true) return hostileBehaviour(options);
  if (_ === false) return honestBehaviour(options);
  return fc.oneof(honestBehaviour(options), hostileBehaviour(options));
}
