import { writeFileSync } from 'node:fs';
import type { ParsedArgs } from '../args.js';
import { buildCatalog, pick } from '../catalog/catalog.js';
import { runMatrix } from '../matrix/run-matrix.js';
import { isSlowScenario } from '../matrix/scenario-cost.js';
import { writeHtmlReport } from '../report/html-report.js';
import { buildRunReport } from '../report/json-report.js';
import { ProgressDisplay } from '../report/progress.js';
import { makeStyle, wantsColour } from '../report/style.js';
import { countOutcomes, formatGrid, formatSummary, formatTable } from '../report/table.js';
import { DEFAULT_FUSE } from '../scenario/run-scenario.js';
import type { ScenarioSpec } from '../scenario/scenario-result.js';

/**
 * `tdxsim run`: every selected guest policy × VMM × workload, with live progress on stderr, then the table, the
 * policy × VMM grid and the summary on stdout. Returns the exit code: 1 when any scenario is UNSAFE or errored.
 */
export async function runCommand(args: ParsedArgs): Promise<number> {
  const catalog = await buildCatalog(args.backend);
  const policies = pick('policy', catalog.policies, (p) => p, args.policy);
  // With --backend and no --vmm, the user's own backends are what they came to test.
  const vmmNames =
    args.vmm.length === 0 && args.backend.length > 0
      ? catalog.vmms.filter((v) => v.kind === 'custom').map((v) => v.name)
      : args.vmm;
  const vmms = pick('vmm', catalog.vmms, (v) => v.name, vmmNames);
  const workloads = pick('workload', catalog.workloads, (w) => w.name, args.workload);
  const specs: ScenarioSpec[] = [];
  for (const vmm of vmms)
    for (const policy of policies)
      for (const workload of workloads) {
        // Unless --vmm names the backend, two kinds of pairs run on the original backend only, not on its MapGPA
        // variants (the hostile ones, kvm-events, hyperv-2048, ...): a workload without MapGPA calls, which runs the
        // same on all of them; and a GiB-sized workload with a guest that accepts 4K pages only (Asterinas), which
        // takes seconds each while churn and dma-small test the same MapGPA handling of that guest.
        const variant = vmm.mapGpaVariantOf !== undefined && args.vmm.length === 0;
        const spec = { policy, vmm: vmm.name, workload: workload.name, seed: args.seed };
        if (variant && (!workload.usesMapGpa || isSlowScenario(spec))) continue;
        specs.push(spec);
      }

  const colour = wantsColour(process.stdout);
  const progress = new ProgressDisplay(process.stderr, specs.length, wantsColour(process.stderr));
  const started = performance.now();
  const { results, details } = await runMatrix({
    specs,
    catalog,
    backendFiles: args.backend,
    ...(args.jobs === undefined ? {} : { jobs: args.jobs }),
    ...(args.checkEvery === undefined ? {} : { checkEvery: args.checkEvery }),
    ...(args.fuse === undefined ? {} : { fuse: args.fuse }),
    detail: args.html !== undefined,
    onStart: (spec, index) => progress.start(spec, index),
    onProgress: (index, done, total) => progress.progress(index, done, total),
    onResult: (result, index) => progress.finish(result, index),
  });
  const wallMs = performance.now() - started;
  progress.end();

  const style = makeStyle(colour);
  const counts = countOutcomes(results);
  process.stdout.write(`${formatTable(results, style)}\n\n${formatGrid(results, style)}\n\n`);
  process.stdout.write(`${formatSummary(counts, wallMs, style)} (seed ${args.seed})\n`);
  const report = buildRunReport({
    seed: args.seed,
    checkEvery: args.checkEvery,
    fuse: args.fuse ?? DEFAULT_FUSE,
    policies,
    vmms,
    workloads: workloads.map((w) => w.name),
    results,
    wallMs,
  });
  if (args.json !== undefined) {
    writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(
      `JSON report: ${args.json} (replay a scenario: tdxsim replay ${args.json} <scenario>)\n`,
    );
  }
  if (args.html !== undefined) {
    writeHtmlReport(args.html, report, details);
    process.stdout.write(`HTML report: ${args.html}\n`);
  }
  return counts.unsafe > 0 || counts.error > 0 ? 1 : 0;
}
