import { type SeptStateName, septStateInfo } from '../abi/sept-state.js';
import { TdxSimError } from '../errors.js';
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

/** The view's mappings by GPA; malformed entries (unaligned, bad level, twice) become mismatches. */
function beliefs(
  side: 'private' | 'shared',
  mappings: Iterable<ViewedMapping>,
  out: ViewMismatch[],
): Map<number, ViewedMapping> {
  const byGpa = new Map<number, ViewedMapping>();
  for (const mapping of mappings) {
    const span = ENTRY_SPAN[mapping.level];
    const wellFormed =
      span !== undefined &&
      (side === 'private' ? mapping.level <= 2 : mapping.level === 0) &&
      Number.isSafeInteger(mapping.gpa) &&
      mapping.gpa >= 0 &&
      mapping.gpa % span === 0 &&
      !byGpa.has(mapping.gpa);
    if (!wellFormed) {
      out.push({
        side,
        gpa: mapping.gpa,
        truth: undefined,
        belief: mapping,
        message: `the backend's ${side} view has a malformed or repeated entry: ${JSON.stringify(mapping)}`,
      });
      continue;
    }
    byGpa.set(mapping.gpa, mapping);
  }
  return byGpa;
}

/**
 * Holds a backend's view of what it mapped against the module's truth for TD `tdr`: every Secure-EPT leaf must be
 * in the view at the same GPA and level (and host page, when the view gives it), and nothing else; the same for the
 * shared EPT per 4K frame. Meant for quiescence, when no zap or fault is half done. Returns the mismatches, at most
 * `limit` (default 64), private side first, each side by GPA.
 */
export function checkVmmView(
  module: TdxModule,
  tdr: number,
  view: VmmView,
  options: { readonly limit?: number } = {},
): ViewMismatch[] {
  const limit = options.limit ?? 64;
  const out: ViewMismatch[] = [];
  const truth = privateLeaves(module, tdr);
  const believed = beliefs('private', view.privateMappings(), out);
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
  const believedShared = beliefs('shared', view.sharedMappings(), out);
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
