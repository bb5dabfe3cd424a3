import type { ContainerModule } from 'inversify';
import { chunkStep, HONEST_STEP, NO_PROGRESS_STEP, type VmmBehaviour } from '../behaviour/vmm-behaviour.js';
import { assertInteger, assertOptions, assertString } from '../validation.js';
import { scriptedVmm } from './scripted-vmm-module.js';

/** One named hostile backend. */
export interface HostileVmm {
  /** Stable kebab-case name (the CLI's matrix uses it). */
  readonly name: string;
  /** What the backend does. */
  readonly description: string;
  /** What a safe guest must do against it. */
  readonly safeGuestMust: string;
  /** The script it runs (`seed` is that of the `'seeded'` order). */
  behaviour(options?: { readonly seed?: number }): VmmBehaviour;
  /** Its ContainerModule for `composeTd`, binding `TdxIds.VmmFactory`. */
  module(options?: { readonly seed?: number }): ContainerModule;
}

/** Pages a "progressing" hostile step converts per call: one, so that even a one-page workload sees the lie. */
const ONE_PAGE = chunkStep(1);

const REFUSE_R11 =
  'refuse the RETRY (R11 outside [current, end) with the shared bit of the request), report the conversion failed and quarantine the pages it cannot vouch for';

/** The `seed` of a hostile entry's options, checked (default 1). */
function seedOf(where: string, options: unknown): number {
  assertOptions(where, 'options', options, ['seed'], false);
  const seed = (options as { seed?: unknown }).seed ?? 1;
  assertInteger('seed', seed, -(2 ** 31), 2 ** 32, 'INVALID_OPTION');
  return seed;
}

function entry(
  name: string,
  description: string,
  safeGuestMust: string,
  behaviour: (seed: number) => VmmBehaviour,
): HostileVmm {
  return {
    name,
    description,
    safeGuestMust,
    behaviour: (options = {}) => behaviour(seedOf(`${name}.behaviour`, options)),
    module: (options = {}) => scriptedVmm(behaviour(seedOf(`${name}.module`, options))),
  };
}

/**
 * The hostile backends: one per misbehaviour the issue names, each a {@link VmmBehaviour} run by the scripted
 * backend on top of an honest core. All are cheap: a sane guest ends a 1 GiB conversion against any of them in a few
 * calls, and none AUGs more than the guest accepts (2M pages where the guest accepts at 2M).
 */
export const hostileVmms: readonly HostileVmm[] = [
  entry(
    'never-progresses',
    'Answers every MapGPA with RETRY and R11 = R12, converting nothing.',
    'stop after a bounded number of RETRYs without progress, report failure and quarantine the range',
    () => ({ steps: [NO_PROGRESS_STEP], order: 'cycle' }),
  ),
  entry(
    'progress-then-stall',
    'Converts one page per call with an honest RETRY twice, then answers RETRY with R11 = R12 forever.',
    'accept the progress, then stop after its bounded number of RETRYs without progress and quarantine the rest',
    () => ({ steps: [ONE_PAGE, ONE_PAGE, NO_PROGRESS_STEP], order: 'repeat-last' }),
  ),
  entry(
    'r11-below-start',
    'Converts one page, then answers RETRY with R11 one page below R12.',
    REFUSE_R11,
    () => ({ steps: [{ ...ONE_PAGE, status: 'RETRY', r11: { below: 1 } }], order: 'cycle' }),
  ),
  entry(
    'r11-at-end',
    'Converts one page, then answers RETRY with R11 = R12 + R13 (the end of the request).',
    REFUSE_R11,
    () => ({ steps: [{ ...ONE_PAGE, status: 'RETRY', r11: 'end' }], order: 'cycle' }),
  ),
  entry(
    'r11-past-end',
    'Converts one page, then answers RETRY with R11 four pages past the end of the request.',
    REFUSE_R11,
    () => ({ steps: [{ ...ONE_PAGE, status: 'RETRY', r11: { pastEnd: 4 } }], order: 'cycle' }),
  ),
  entry(
    'r11-huge',
    'Converts one page, then answers RETRY with R11 = 0xfffffffffffff000 (beyond any GPA width).',
    REFUSE_R11,
    () => ({ steps: [{ ...ONE_PAGE, status: 'RETRY', r11: { raw: '0xfffffffffffff000' } }], order: 'cycle' }),
  ),
  entry(
    'r11-unaligned',
    'Converts one page, then answers RETRY with R11 = the next GPA + 0x800 (inside the range, not page-aligned).',
    'refuse an unaligned R11 (or at least never count the page it points into as converted) and quarantine',
    () => ({ steps: [{ ...ONE_PAGE, status: 'RETRY', r11: { unaligned: 0x800 } }], order: 'cycle' }),
  ),
  entry(
    'r11-shared-bit-flipped',
    'Converts one page, then answers RETRY with the next GPA but the shared bit flipped (the other direction).',
    'refuse an R11 whose shared bit differs from the request: it must never convert in the other direction',
    () => ({ steps: [{ ...ONE_PAGE, status: 'RETRY', r11: 'shared-bit-flipped' }], order: 'cycle' }),
  ),
  entry(
    'status-outside-ghci',
    'Converts one page, then answers R10 = 0x2 (a status the GHCI does not define).',
    'treat any status other than SUCCESS and RETRY as a failure and quarantine what was asked',
    () => ({ steps: [{ ...ONE_PAGE, status: { raw: '0x2' } }], order: 'cycle' }),
  ),
  entry(
    'success-without-converting',
    'Answers SUCCESS and converts nothing.',
    'never use a page as private unless its accept succeeded (to private); to shared this is undetectable by any guest',
    () => ({ steps: [{ convert: 'none', status: 'SUCCESS', r11: 'next' }], order: 'cycle' }),
  ),
  entry(
    'converts-less',
    'Answers SUCCESS but leaves the last page of every request unconverted.',
    'accept every page it made private before use (the unconverted page then fails to accept or is AUGed fresh)',
    () => ({ steps: [{ convert: { missing: 1 }, status: 'SUCCESS', r11: 'next' }], order: 'cycle' }),
  ),
  entry(
    'converts-more',
    'Converts the request and two pages past its end, then answers SUCCESS.',
    'detect the extra pages on its next access (a private page it accepted comes back FREE/PENDING: tampered)',
    () => ({ steps: [{ convert: { extra: 2 }, status: 'SUCCESS', r11: 'next' }], order: 'cycle' }),
  ),
  entry(
    'retry-then-error',
    'Converts one page with an honest RETRY, then converts one more page and answers INVALID_OPERAND.',
    'report the acknowledged prefix as converted and quarantine the rest of what it asked for',
    () => ({
      steps: [ONE_PAGE, { convert: { upTo: 1 }, status: 'INVALID_OPERAND', r11: 'start' }],
      order: 'cycle',
    }),
  ),
  entry(
    're-aug-accepted',
    'Converts honestly, but on every call removes a private page the guest accepted (BLOCK → TRACK → REMOVE) and AUGs it again.',
    'notice on its next access that an accepted page is PENDING again (fault "tampered"), quarantine it, never accept it again',
    () => ({ steps: [{ ...HONEST_STEP, effects: ['tamper-accepted'] }], order: 'cycle' }),
  ),
  entry(
    'shared-page-aliased',
    'Converts honestly, but maps the second page of each to-shared request to the host page of the first.',
    'nothing it can detect; it must never put private data in shared pages (the host sees shared pages anyway)',
    () => ({ steps: [{ ...HONEST_STEP, effects: ['alias-shared-pair'] }], order: 'cycle' }),
  ),
  entry(
    'shared-maps-td-page',
    "Converts honestly, but maps the first page of each to-shared request to a host page the TD owns (an accepted private page's).",
    'nothing it can detect; its private data must stay unreadable by the host (the module guarantees it)',
    () => ({ steps: [{ ...HONEST_STEP, effects: ['map-td-page'] }], order: 'cycle' }),
  ),
  entry(
    'shared-keeps-private',
    'Answers SUCCESS to to-shared requests after mapping the shared side without removing the private pages.',
    'never touch the private alias of a page it made shared (undetectable, but harmless if it does not)',
    () => ({ steps: [{ ...HONEST_STEP, effects: ['keep-private'] }], order: 'cycle' }),
  ),
  entry(
    'inconsistent-replies',
    'Answers each call with a step picked at random (seeded): honest, a one-page RETRY, no progress, R11 past the end, or an error after converting one page.',
    'validate every reply on its own (the same request gets different answers) and stay within its bound',
    (seed) => ({
      steps: [
        HONEST_STEP,
        ONE_PAGE,
        NO_PROGRESS_STEP,
        { ...ONE_PAGE, status: 'RETRY', r11: { pastEnd: 1 } },
        { convert: { upTo: 1 }, status: 'INVALID_OPERAND', r11: 'start' },
      ],
      order: 'seeded',
      seed,
    }),
  ),
];

/** The hostile backend called `name`, or undefined. */
export function hostileVmm(name: string): HostileVmm | undefined {
  assertString('name', name);
  return hostileVmms.find((vmm) => vmm.name === name);
}
