import type { ScenarioResult } from '../scenario/scenario-result.js';
import type { RunReport } from './json-report.js';

/**
 * How to run a scenario again: `tdxsim replay REPORT.json ID` when there is a JSON report, else the `tdxsim run`
 * line that selects exactly it (with the user's backend file, and the wasm guest's file, when it is one).
 */
export function replayCommand(
  result: ScenarioResult,
  jsonFile?: string,
  backendFile?: string,
  guestFile?: string,
): string {
  if (jsonFile !== undefined) return `tdxsim replay ${jsonFile} ${result.id} --trace`;
  return [
    'tdxsim run',
    guestFile === undefined ? `--policy ${result.policy}` : `--policy none --guest ${guestFile}`,
    backendFile === undefined ? `--vmm ${result.vmm}` : `--backend ${backendFile}`,
    `--workload ${result.workload}`,
    `--seed ${result.seed}`,
  ].join(' ');
}

/** The wasm guests' files of a report, by row name (what {@link replayCommand} takes as `guestFile`). */
export function guestFiles(report: RunReport): Map<string, string> {
  return new Map((report.matrix.guests ?? []).map((g) => [g.name, g.file]));
}
