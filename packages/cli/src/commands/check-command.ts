import { runConformance } from '@tdxsim/testkit';
import type { ParsedArgs } from '../args.js';
import { buildCatalog, findVmm } from '../catalog/catalog.js';
import { makeStyle, wantsColour } from '../report/style.js';
import { UsageError } from '../usage-error.js';

/**
 * `tdxsim check --backend <file>` (or `--vmm <name>` for a built-in one): runs the testkit's conformance kit on the
 * backend and prints one line per rule. Exit code 0 when every rule passes, 1 otherwise.
 */
export async function checkCommand(args: ParsedArgs): Promise<number> {
  if (args.backend.length === 0 && args.vmm.length === 0) {
    throw new UsageError('check needs --backend <file> (or --vmm <name> for a built-in backend)');
  }
  const catalog = await buildCatalog(args.backend);
  const names =
    args.vmm.length > 0 ? args.vmm : catalog.vmms.filter((v) => v.kind === 'custom').map((v) => v.name);
  const entries = names.map((name) => findVmm(catalog, name));
  const style = makeStyle(wantsColour(process.stdout));
  let failed = 0;
  for (const entry of entries) {
    const checks = await runConformance(entry.module(args.seed), { seed: args.seed });
    const width = Math.max(...checks.map((c) => c.rule.length));
    process.stdout.write(`${style.bold(`conformance of ${entry.name}`)} (${entry.description})\n`);
    for (const check of checks) {
      const verdict = check.passed ? style.outcome('ok', 'pass') : style.outcome('UNSAFE', 'FAIL');
      process.stdout.write(
        `  ${verdict}  ${check.rule.padEnd(width)}  ${check.passed ? check.title : check.message}\n`,
      );
    }
    const bad = checks.filter((c) => !c.passed).length;
    failed += bad;
    process.stdout.write(`  ${checks.length - bad}/${checks.length} rules pass\n\n`);
  }
  return failed > 0 ? 1 : 0;
}
