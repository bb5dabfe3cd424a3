import { writeFileSync } from 'node:fs';
import { assertOptionalPath, assertRunReport } from '../api-arguments.js';
import { isChange } from '../expectations/expectations.js';
import type { ScenarioResult } from '../scenario/scenario-result.js';
import type { RunReport } from './json-report.js';
import { guestFiles, replayCommand } from './replay-hint.js';

/** Text for XML attributes and content: the five special characters escaped, characters XML 1.0 forbids dropped. */
export function xmlText(text: string): string {
  return (
    text
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      // Characters XML 1.0 does not allow at all.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the ones to drop
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
  );
}

/** Whether a result fails the run: a change from the expectations, or an error of a user's backend. */
export function failsRun(result: ScenarioResult, customVmms: ReadonlySet<string>): boolean {
  return (
    isChange(result.outcome, result.expected) || (result.outcome === 'error' && customVmms.has(result.vmm))
  );
}

/**
 * The JUnit XML of a run (one `<testsuite>` per VMM, one `<testcase>` per scenario), as CI systems read it: a result
 * that fails the run (a change from the expectations, or an error of a user's backend) is a `<failure>` with its
 * reason and the command that replays it; an UNSAFE or error outcome that was expected is `<skipped>` with the same
 * text; the rest pass, with their reason (if any) in `<system-out>`.
 */
export function renderJunit(report: RunReport, jsonFile?: string): string {
  assertRunReport('report', report);
  assertOptionalPath('jsonFile', jsonFile);
  const custom = new Set(report.matrix.vmms.filter((v) => v.kind === 'custom').map((v) => v.name));
  const files = new Map(report.matrix.vmms.map((v) => [v.name, v.file]));
  const guests = guestFiles(report);
  const vmms = [...new Set(report.results.map((r) => r.vmm))];
  const seconds = (ms: number): string => (ms / 1000).toFixed(3);
  const suites: string[] = [];
  let failures = 0;
  let skipped = 0;
  for (const vmm of vmms) {
    const results = report.results.filter((r) => r.vmm === vmm);
    const cases: string[] = [];
    let suiteFailures = 0;
    let suiteSkipped = 0;
    let time = 0;
    for (const r of results) {
      time += r.wallMs;
      const replay = replayCommand(r, jsonFile, files.get(r.vmm), guests.get(r.policy));
      const reason = r.reason ?? '';
      const head = `    <testcase name="${xmlText(r.id)}" classname="tdxsim.${xmlText(vmm)}" time="${seconds(r.wallMs)}">`;
      if (failsRun(r, custom)) {
        suiteFailures++;
        const expected =
          r.expected === undefined || r.expected === null ? 'nothing expected' : `expected ${r.expected}`;
        const message = `${r.outcome} (${expected}): ${reason}`;
        cases.push(
          `${head}\n      <failure message="${xmlText(message)}" type="${xmlText(r.outcome)}">${xmlText(`${message}\nseed ${r.seed}\nreplay: ${replay}`)}</failure>\n    </testcase>`,
        );
      } else if (r.outcome === 'UNSAFE' || r.outcome === 'error') {
        suiteSkipped++;
        cases.push(
          `${head}\n      <skipped message="${xmlText(`${r.outcome} as expected: ${reason}`)}"/>\n    </testcase>`,
        );
      } else if (reason !== '') {
        cases.push(
          `${head}\n      <system-out>${xmlText(`${r.outcome}: ${reason}`)}</system-out>\n    </testcase>`,
        );
      } else {
        cases.push(`${head.slice(0, -1)}/>`);
      }
    }
    failures += suiteFailures;
    skipped += suiteSkipped;
    suites.push(
      `  <testsuite name="tdxsim ${xmlText(vmm)}" tests="${results.length}" failures="${suiteFailures}" errors="0" skipped="${suiteSkipped}" time="${seconds(time)}" timestamp="${xmlText(report.createdAt.replace(/\.\d+Z$/, ''))}">\n` +
        `    <properties>\n      <property name="seed" value="${report.seed}"/>\n      <property name="tdxsim" value="${xmlText(report.tool.version)}"/>\n    </properties>\n` +
        `${cases.join('\n')}\n  </testsuite>`,
    );
  }
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<testsuites name="tdxsim" tests="${report.results.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${seconds(report.summary.wallMs)}">\n` +
    `${suites.join('\n')}\n</testsuites>\n`
  );
}

export function writeJunit(file: string, report: RunReport, jsonFile?: string): void {
  writeFileSync(file, renderJunit(report, jsonFile));
}
