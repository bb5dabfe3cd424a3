import { writeFileSync } from 'node:fs';
import { xmlText } from '../report/junit-report.js';
import type { ExploreReport } from './explore-report.js';
import { isExploreChange, isNotReached, notReachedText, raceLabel } from './explore-result.js';

/**
 * The JUnit XML of an explore run: one `<testsuite>` per backend, one `<testcase>` per race (`race@guest` for a guest
 * race, one per guest under test). An outcome not as expected is a `<failure>` with the failure's message, the
 * shrunk schedule and the replay command; an expected failure is `<skipped>` with the same text, and so is one
 * this run's budget did not reach (fewer schedules than it was seen with); a race that does not apply is
 * `<skipped>` with why.
 */
export function renderExploreJunit(report: ExploreReport): string {
  const seconds = (ms: number): string => (ms / 1000).toFixed(3);
  const suites: string[] = [];
  let failures = 0;
  let skipped = 0;
  for (const vmm of [...new Set(report.results.map((r) => r.vmm))]) {
    const results = report.results.filter((r) => r.vmm === vmm);
    const cases: string[] = [];
    let suiteFailures = 0;
    let suiteSkipped = 0;
    for (const r of results) {
      const head = `    <testcase name="${xmlText(raceLabel(r))}" classname="tdxsim.explore.${xmlText(vmm)}" time="${seconds(r.wallMs)}">`;
      const detail =
        r.failure === null
          ? (r.reason ?? '')
          : `${r.failure.kind}: ${r.failure.message}\nschedule ${r.failure.schedule} (#${r.failure.scheduleIndex} of ${r.schedulesRun})\nreplay: ${r.failure.replay}`;
      if (isExploreChange(r)) {
        suiteFailures++;
        const expected = r.expected === null ? 'nothing expected' : `expected ${r.expected}`;
        cases.push(
          `${head}\n      <failure message="${xmlText(`${r.outcome} (${expected}): ${r.reason ?? ''}`)}" type="${xmlText(r.outcome)}">${xmlText(detail)}</failure>\n    </testcase>`,
        );
      } else if (isNotReached(r)) {
        suiteSkipped++;
        cases.push(
          `${head}\n      <skipped message="${xmlText(notReachedText(r))}"/>\n      <system-out>${xmlText(detail)}</system-out>\n    </testcase>`,
        );
      } else if (r.outcome !== 'ok') {
        suiteSkipped++;
        cases.push(
          `${head}\n      <skipped message="${xmlText(`${r.outcome} as expected: ${r.reason ?? ''}`)}"/>\n      <system-out>${xmlText(detail)}</system-out>\n    </testcase>`,
        );
      } else {
        cases.push(
          `${head}\n      <system-out>${xmlText(`${r.schedulesRun} schedules, ${r.distinctInterleavings} distinct interleavings, no failure`)}</system-out>\n    </testcase>`,
        );
      }
    }
    failures += suiteFailures;
    skipped += suiteSkipped;
    suites.push(
      `  <testsuite name="tdxsim explore ${xmlText(vmm)}" tests="${results.length}" failures="${suiteFailures}" errors="0" skipped="${suiteSkipped}" time="${seconds(results.reduce((t, r) => t + r.wallMs, 0))}" timestamp="${xmlText(report.createdAt.replace(/\.\d+Z$/, ''))}">\n` +
        `    <properties>\n      <property name="seed" value="${report.seed}"/>\n      <property name="scheduler" value="${report.scheduler}"/>\n      <property name="tdxsim" value="${xmlText(report.tool.version)}"/>\n    </properties>\n` +
        `${cases.join('\n')}\n  </testsuite>`,
    );
  }
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<testsuites name="tdxsim explore" tests="${report.results.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${seconds(report.summary.wallMs)}">\n` +
    `${suites.join('\n')}\n</testsuites>\n`
  );
}

export function writeExploreJunit(file: string, report: ExploreReport): void {
  writeFileSync(file, renderExploreJunit(report));
}
