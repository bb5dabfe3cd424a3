import { checkLedger } from '@tdxsim/guest';
import { checkInvariants, checkVmmView } from '@tdxsim/tdx-module';
import type { ExploredTd, ExploreFailureKind } from './explore-types.js';

/** One check that failed at quiescence. */
export interface Finding {
  readonly kind: ExploreFailureKind;
  readonly message: string;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const MAX_LINES = 5;

function summarise(lines: readonly string[]): string {
  const shown = lines.slice(0, MAX_LINES).join('; ');
  return lines.length > MAX_LINES ? `${shown}; and ${lines.length - MAX_LINES} more` : shown;
}

/**
 * The built-in checks of a run that reached quiescence, in order: the module's invariants (the VMM-owned shared-EPT
 * rules included: an honest backend keeps them), the backend's view against the module's truth, then each guest's
 * ledger against the truth. Returns every finding, first one first. No safety monitor is made here: its other rules
 * judge secrets it planted and quarantine it saw at earlier checks, which one made at quiescence has not, so it
 * would only run the invariants and the view a second time.
 */
export async function checkAtQuiescence(td: ExploredTd): Promise<Finding[]> {
  const findings: Finding[] = [];
  const invariants = checkInvariants(td.module);
  if (invariants.length > 0)
    findings.push({
      kind: 'invariant',
      message: summarise(invariants.map((v) => `${v.rule}: ${v.message}`)),
    });
  // The view comes from the backend: one that throws is a finding of this run, never the end of the exploration.
  try {
    const view = typeof td.vmm?.view === 'function' ? td.vmm.view() : undefined;
    if (view !== undefined) {
      const mismatches = checkVmmView(td.module, td.tdr, view);
      if (mismatches.length > 0)
        findings.push({ kind: 'view', message: summarise(mismatches.map((m) => m.message)) });
    }
  } catch (error) {
    findings.push({
      kind: 'view',
      message: `the backend's view could not be read: ${error instanceof Error ? error.message : String(error)}`,
    });
  }
  for (const [i, guest] of (td.guests ?? []).entries()) {
    const mismatches = checkLedger(guest.ledger, td.module, td.tdr);
    if (mismatches.length > 0) {
      findings.push({
        kind: 'ledger',
        message: `guest ${i}: ${summarise(
          mismatches.map(
            (m) =>
              `${hex(m.start)}..${hex(m.end)} is ${m.ledger} in the ledger, ${m.module} (level ${m.level}) in the module`,
          ),
        )}`,
      });
    }
  }
  return findings;
}
