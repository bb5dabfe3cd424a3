import { type SeptStateName, septStateInfo } from '../abi/sept-state.js';
import { ADDRESS_LIMIT, assertIntegerInRange, assertObject, TdxSimError } from '../errors.js';
import { ENTRY_SPAN } from '../sept/sept-table.js';
import type { TdxModule } from '../tdx-module.js';
import type { ViewedMapping, VmmView } from '../vmm-view.js';

/** Where a backend's view and the module's truth disagree. */
export interface ViewMismatch {
  /** Which table: the Secure-EPT (`private`) or the shared EPT (`shared`). */
  readonly side: 'private' | 'shared';
  /** The private (alias) GPA of the entry. */
  readonly gpa: number;
  /** What the module holds there (undefined: nothing). */
  readonly truth: { readonly level: number; readonly state: SeptStateName; readonly hpa: number } | undefined;
  /** What the backend believes (undefined: nothing). */
  readonly belief: ViewedMapping | undefined;
  readonly message: string;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const SIZE = ['4K', '2M', '1G'];

interface Leaf {
  readonly level: number;
  readonly state: SeptStateName;
  readonly hpa: number;
}

/** Every leaf of TD `tdr`'s Secure-EPT (any leaf state: PENDING, MAPPED, blocked, ...) by GPA. */
function privateLeaves(module: TdxModule, tdr: number): Map<number, Leaf> {
  const td = module.state.tds.get(tdr);
  if (td?.sept === undefined)
    throw new TdxSimError('INVALID_ARGUMENT', `no initialised TD has TDR ${hex(tdr)}`, 'tdr');
  const leaves = new Map<number, Leaf>();
  for (const { table, baseGpa } of td.sept.tables()) {
    if (table.nonFree === 0) continue;
    const span = ENTRY_SPAN[table.level] as number;
    for (let i = 0; i < 512; i++) {
      const info = septStateInfo(table.state[i] as number);
      if (!info.leaf) continue;
      leaves.set(baseGpa + i * span, { level: table.level, state: info.name, hpa: table.hpa[i] as number });
    }
  }
  return leaves;
}

/** A value from the backend, shown in a message (bounded: it may be anything). */
function shown(value: unknown): string {
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text.slice(0, 200);
  } catch {
    return String(value);
  }
}

/**
 * The view's mappings by GPA; malformed entries (not an object, unaligned, bad level, twice) become mismatches, as
 * does a side that cannot be read (its method throws, or returns something that is not iterable): the view comes
 * from the backend, which is untrusted.
 */
function beliefs(side: 'private' | 'shared', view: unknown, out: ViewMismatch[]): Map<number, ViewedMapping> {
  const byGpa = new Map<number, ViewedMapping>();
  const unreadable = (why: string): void => {
    out.push({
      side,
      gpa: 0,
      truth: undefined,
      belief: undefined,
      message: `the backend's ${side} view cannot be read: ${why}`,
    });
  };
  const name = side === 'private' ? 'privateMappings' : 'sharedMappings';
  const method =
    typeof view === 'object' && view !== null ? (view as Record<string, unknown>)[name] : undefined;
  if (typeof method !== 'function') {
    unreadable(`the view ${shown(view)} has no ${name} method`);
    return byGpa;
  }
  let mappings: unknown;
  try {
    mappings = method.call(view);
  } catch (error) {
    unreadable(`${side}Mappings() threw ${error instanceof Error ? error.message : shown(error)}`);
    return byGpa;
  }
  if (
    typeof mappings !== 'object' ||
    mappings === null ||
    typeof (mappings as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== 'function'
  ) {
    unreadable(`${side}Mappings() returned ${shown(mappings)}, not an iterable`);
    return byGpa;
  }
  try {
    for (const entry of mappings as Iterable<unknown>) {
      const mapping = entry as ViewedMapping;
      const span =
        typeof entry === 'object' && entry !== null && typeof mapping.level === 'number'
          ? ENTRY_SPAN[mapping.level]
          : undefined;
      const wellFormed =
        span !== undefined &&
        (side === 'private' ? mapping.level <= 2 : mapping.level === 0) &&
        Number.isSafeInteger(mapping.gpa) &&
        mapping.gpa >= 0 &&
        mapping.gpa < ADDRESS_LIMIT &&
        mapping.gpa % span === 0 &&
        (mapping.hpa === undefined || Number.isSafeInteger(mapping.hpa)) &&
        !byGpa.has(mapping.gpa);
      if (!wellFormed) {
        out.push({
          side,
          gpa: typeof mapping?.gpa === 'number' && Number.isFinite(mapping.gpa) ? mapping.gpa : 0,
          truth: undefined,
          belief: undefined,
          message: `the backend's ${side} view has a malformed or repeated entry: ${shown(entry)}`,
        });
        continue;
      }
      byGpa.set(mapping.gpa, mapping);
    }
  } catch (error) {
    unreadable(`iterating it threw ${error instanceof Error ? error.message : shown(error)}`);
  }
  return byGpa;
}

/**
 * Holds a backend's view of what it mapped against the module's truth for TD `tdr`: every Secure-EPT leaf must be
 * in the view at the same GPA and level (and host page, when the view gives it), and nothing else; the same for the
 * shared EPT per 4K frame. Meant for quiescence, when no zap or fault is half done. Returns the mismatches, at most
 * `limit` (default 64, at least 1), private side first, each side by GPA. The view is the backend's, so nothing in it
 * throws: a view that is not one, a side that cannot be read and a malformed entry are mismatches. A bad `tdr` or
 * `limit` (the caller's) throws `TdxSimError('INVALID_ARGUMENT')`.
 */
export function checkVmmView(
  module: TdxModule,
  tdr: number,
  view: VmmView,
  options: { readonly limit?: number } = {},
): ViewMismatch[] {
  assertObject('options', options);
  const limit = options.limit ?? 64;
  assertIntegerInRange('limit', limit, 1, Number.MAX_SAFE_INTEGER);
  const out: ViewMismatch[] = [];
  const truth = privateLeaves(module, tdr);
  // The view is the backend's: one that is not a view at all is a mismatch, as a wrong entry is.
  const believed = beliefs('private', view, out);
  for (const [gpa, leaf] of truth) {
    const belief = believed.get(gpa);
    const at = `${hex(gpa)}`;
    if (belief === undefined) {
      out.push({
        side: 'private',
        gpa,
        truth: leaf,
        belief,
        message: `the Secure-EPT maps ${at} (${SIZE[leaf.level]}, ${leaf.state}, host page ${hex(leaf.hpa)}) but the backend's view has no mapping there`,
      });
    } else if (belief.level !== leaf.level || (belief.hpa !== undefined && belief.hpa !== leaf.hpa)) {
      out.push({
        side: 'private',
        gpa,
        truth: leaf,
        belief,
        message: `at ${at} the Secure-EPT holds ${SIZE[leaf.level]} ${leaf.state} on host page ${hex(leaf.hpa)}, the backend believes ${SIZE[belief.level]}${belief.hpa === undefined ? '' : ` on ${hex(belief.hpa)}`}`,
      });
    }
    believed.delete(gpa);
  }
  for (const [gpa, belief] of believed) {
    const now = module.privatePage(tdr, gpa);
    out.push({
      side: 'private',
      gpa,
      truth: undefined,
      belief,
      message: `the backend believes ${hex(gpa)} is mapped private (${SIZE[belief.level]}) but the Secure-EPT holds ${now.state} at level ${now.level} there`,
    });
  }
  const shared = new Map(module.sharedEpt(tdr).entries());
  const believedShared = beliefs('shared', view, out);
  for (const [gpa, hpa] of shared) {
    const belief = believedShared.get(gpa);
    if (belief === undefined) {
      out.push({
        side: 'shared',
        gpa,
        truth: { level: 0, state: 'MAPPED', hpa },
        belief,
        message: `the shared EPT maps ${hex(gpa)} to ${hex(hpa)} but the backend's view has no shared mapping there`,
      });
    } else if (belief.hpa !== undefined && belief.hpa !== hpa) {
      out.push({
        side: 'shared',
        gpa,
        truth: { level: 0, state: 'MAPPED', hpa },
        belief,
        message: `the shared EPT maps ${hex(gpa)} to ${hex(hpa)}, the backend believes ${hex(belief.hpa)}`,
      });
    }
    believedShared.delete(gpa);
  }
  for (const [gpa, belief] of believedShared) {
    out.push({
      side: 'shared',
      gpa,
      truth: undefined,
      belief,
      message: `the backend believes ${hex(gpa)} is mapped shared but the shared EPT has no entry there`,
    });
  }
  const side = (m: ViewMismatch): number => (m.side === 'private' ? 0 : 1);
  out.sort((a, b) => side(a) - side(b) || a.gpa - b.gpa);
  return out.slice(0, limit);
}
