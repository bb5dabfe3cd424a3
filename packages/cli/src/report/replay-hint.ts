import type { ScenarioResult } from '../scenario/scenario-result.js';

/**
 * How to run a scenario again: `tdxsim replay REPORT.json ID` when there is a JSON report, else the `tdxsim run`
 * line that selects exactly it (with the user's backend file when it is one).
 */
export function replayCommand(result: ScenarioResult, jsonFile?: string, backendFile?: string): string {
  if (jsonFile !== undefined) return `tdxsim replay ${jsonFile} ${result.id} --trace`;
  return [
    'tdxsim run',
    `--policy ${result.policy}`,
    backendFile === undefined ? `--vmm ${result.vmm}` : `--backend ${backendFile}`,
    `--workload ${result.workload}`,
    `--seed ${result.seed}`,
  ].join(' ');
}
