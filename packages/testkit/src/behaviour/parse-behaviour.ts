import { TestkitError } from '../errors.js';
import {
  type ConvertChoice,
  type GhciStatusName,
  type MapGpaStep,
  type R11Choice,
  SIDE_EFFECTS,
  type SideEffect,
  type StatusChoice,
  type VmmBehaviour,
} from './vmm-behaviour.js';

const STATUS_NAMES: readonly GhciStatusName[] = [
  'SUCCESS',
  'RETRY',
  'INVALID_OPERAND',
  'GPA_INUSE',
  'ALIGN_ERROR',
  'SUBFUNC_UNSUPPORTED',
];
const R11_WORDS = ['next', 'start', 'end', 'zero', 'shared-bit-flipped'] as const;

function fail(field: string, what: string): never {
  throw new TestkitError('INVALID_BEHAVIOUR', `${field}: ${what}`, field);
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function count(value: unknown, field: string, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max)
    fail(field, `expected an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return value as number;
}

function hex64(value: unknown, field: string): `0x${string}` {
  if (typeof value !== 'string' || !/^0x[0-9a-fA-F]{1,16}$/.test(value))
    fail(field, `expected a 64-bit hex string, got ${JSON.stringify(value)}`);
  return value as `0x${string}`;
}

/** One key of `{ key: value }`, or a failure naming the keys allowed. */
function singleKey(value: unknown, field: string, keys: readonly string[]): [string, unknown] {
  if (!isRecord(value)) fail(field, `expected a string or an object with one of ${keys.join(', ')}`);
  const entries = Object.entries(value);
  const entry = entries[0];
  if (entries.length !== 1 || entry === undefined || !keys.includes(entry[0]))
    fail(field, `expected one of ${keys.join(', ')}, got ${JSON.stringify(value)}`);
  return entry;
}

function status(value: unknown, field: string): StatusChoice {
  if (value === 'auto' || STATUS_NAMES.includes(value as GhciStatusName)) return value as StatusChoice;
  const [, raw] = singleKey(value, field, ['raw']);
  return { raw: hex64(raw, `${field}.raw`) };
}

function r11(value: unknown, field: string): R11Choice {
  if ((R11_WORDS as readonly unknown[]).includes(value)) return value as R11Choice;
  const [key, n] = singleKey(value, field, ['below', 'pastEnd', 'unaligned', 'raw']);
  if (key === 'raw') return { raw: hex64(n, `${field}.raw`) };
  if (key === 'unaligned') return { unaligned: count(n, `${field}.unaligned`, 1, 4095) };
  return key === 'below'
    ? { below: count(n, `${field}.below`, 1, 2 ** 20) }
    : { pastEnd: count(n, `${field}.pastEnd`, 1, 2 ** 20) };
}

function convert(value: unknown, field: string): ConvertChoice {
  if (value === 'all' || value === 'none') return value;
  const [key, n] = singleKey(value, field, ['upTo', 'missing', 'extra']);
  const pages = count(n, `${field}.${key}`, key === 'upTo' ? 1 : 0, 2 ** 20);
  return key === 'upTo' ? { upTo: pages } : key === 'missing' ? { missing: pages } : { extra: pages };
}

/** Checks one step of a script (`field` names it in the error). */
export function parseStep(value: unknown, field: string): MapGpaStep {
  if (!isRecord(value)) fail(field, 'expected an object { convert, status, r11, effects? }');
  for (const key of Object.keys(value))
    if (!['convert', 'status', 'r11', 'effects'].includes(key)) fail(`${field}.${key}`, 'unknown field');
  const parsed: MapGpaStep = {
    convert: convert(value['convert'], `${field}.convert`),
    status: status(value['status'], `${field}.status`),
    r11: r11(value['r11'], `${field}.r11`),
  };
  const effects = value['effects'];
  if (effects === undefined) return parsed;
  if (!Array.isArray(effects)) fail(`${field}.effects`, 'expected an array');
  effects.forEach((effect, i) => {
    if (!SIDE_EFFECTS.includes(effect as SideEffect))
      fail(`${field}.effects[${i}]`, `expected one of ${SIDE_EFFECTS.join(', ')}`);
  });
  return { ...parsed, effects: effects as SideEffect[] };
}

/**
 * Checks a behaviour given as JSON text or as a parsed value and returns it typed; throws
 * {@link TestkitError} INVALID_BEHAVIOUR naming the field at fault. The inverse of `formatBehaviour`.
 */
export function parseBehaviour(input: string | unknown): VmmBehaviour {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch (error) {
      fail('behaviour', `not JSON: ${(error as Error).message}`);
    }
  }
  if (!isRecord(value)) fail('behaviour', 'expected an object { steps, order, seed? }');
  const steps = value['steps'];
  if (!Array.isArray(steps) || steps.length === 0) fail('steps', 'expected a non-empty array');
  const order = value['order'];
  if (order !== 'cycle' && order !== 'repeat-last' && order !== 'seeded')
    fail('order', `expected 'cycle', 'repeat-last' or 'seeded', got ${JSON.stringify(order)}`);
  const parsed: VmmBehaviour = { steps: steps.map((s, i) => parseStep(s, `steps[${i}]`)), order };
  if (value['seed'] === undefined) return parsed;
  return { ...parsed, seed: count(value['seed'], 'seed', -(2 ** 31), 2 ** 32) };
}
