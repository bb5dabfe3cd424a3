import type { TraceEvent, TraceSink } from '@tdxsim/tdx-module';
import { accept4g } from '@tdxsim/testkit';
import { describe, expect, it } from 'vitest';
import { figureLine, figureOf } from '../src/bench/bench-figure.js';
import { kvmWithHugePages } from '../src/bench/kvm-huge-pages.js';
import { moduleSameCallsAccept } from '../src/bench/module-alone.js';
import { buildCatalog } from '../src/catalog/catalog.js';
import { runScenario } from '../src/scenario/run-scenario.js';
import { runMain } from './run-cli.js';

const GIB = 2 ** 30;

/** The calls that build a TD and boot the guest: not the job, and the two runs build TDs of different vCPU counts. */
const NOT_THE_JOB = new Set([
  'TDH.MNG.CREATE',
  'TDH.MNG.KEY.CONFIG',
  'TDH.MNG.ADDCX',
  'TDH.MNG.INIT',
  'TDH.VP.CREATE',
  'TDH.VP.ADDCX',
  'TDH.VP.INIT',
  'TDH.MR.FINALIZE',
  'TDG.VP.INFO',
]);

/** `kind name ok|error` of a module call, a TD exit by reason, or undefined for what is not the job. */
function callKind(event: TraceEvent): string | undefined {
  switch (event.kind) {
    case 'seamcall':
    case 'tdcall':
      return NOT_THE_JOB.has(event.leaf)
        ? undefined
        : `${event.kind} ${event.leaf} ${event.status === 0n ? 'ok' : 'error'}`;
    case 'td-exit':
      return `td-exit ${event.reason}`;
    default:
      return undefined;
  }
}

function countKinds(events: Iterable<TraceEvent>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const event of events) {
    const kind = callKind(event);
    if (kind !== undefined) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts;
}

// The benchmark measures; these tests check what it runs and prints (a time is never asserted).
describe('tdxsim bench: the module alone with the full stack calls', () => {
  it('makes, kind by kind, the module calls and exits the full stack makes for the same 2M accept', async () => {
    const bytes = 2 * GIB;
    const kvm = (await buildCatalog()).vmms.find((v) => v.name === 'kvm');
    if (kvm === undefined) throw new Error('no kvm in the catalog');
    const fullStack = await runScenario(
      { policy: 'linux', vmm: 'kvm-2m', workload: accept4g.name, seed: 1, amount: bytes },
      kvmWithHugePages(kvm),
      accept4g,
      { keepTrace: true, checkEvery: Number.MAX_SAFE_INTEGER },
    );
    expect(fullStack.result.outcome).toBe('ok');
    const events: TraceEvent[] = [];
    const sink: TraceSink = { enabled: true, record: (event) => events.push(event) };
    expect(await moduleSameCallsAccept(bytes, sink)).toBeGreaterThanOrEqual(0);
    const expected = countKinds(fullStack.trace);
    // What the full stack makes for 1,024 pages of 2M: the refused 1G ACCEPT of each GiB, then per page the ACCEPT
    // that exits, AUG, VP.ENTER (returning the next exit: the last one has not returned), the ACCEPT again; SEPT.ADD
    // of the level-3 and level-2 tables of the first GiB and the level-2 one of the second.
    expect(Object.fromEntries(expected)).toEqual({
      'tdcall TDG.MEM.PAGE.ACCEPT error': 2,
      'td-exit EPT violation (ACCEPT)': 1024,
      'seamcall TDH.VP.ENTER error': 1024,
      'seamcall TDH.MEM.SEPT.ADD ok': 3,
      'seamcall TDH.MEM.PAGE.AUG ok': 1024,
      'tdcall TDG.MEM.PAGE.ACCEPT ok': 1024,
    });
    expect(Object.fromEntries(countKinds(events))).toEqual(Object.fromEntries(expected));
    // In the same order, too.
    const sequence = (all: readonly TraceEvent[]) =>
      all.map(callKind).filter((kind): kind is string => kind !== undefined);
    expect(sequence(events)).toEqual(sequence(fullStack.trace));
  });

  it('prints both module-alone figures and both ratio lines, the new one beside the first', async () => {
    const run = await runMain(['bench', '--quick', '--vmm', 'kvm', '--only', 'accept-2m,module-alone']);
    expect(run.code).toBe(0);
    const lines = run.stdout.split('\n');
    const at = (pattern: RegExp): number => lines.findIndex((line) => pattern.test(line));
    const only = at(/^module alone, AUG\+ACCEPT 16 GiB at 2M: min \d+ ms CPU, median \d+ ms CPU {2}$/);
    const same = at(
      /^module alone, the full stack's calls \(ACCEPT exit, AUG, VP\.ENTER, ACCEPT\) 16 GiB at 2M: min \d+ ms CPU, median \d+ ms CPU {2}$/,
    );
    // --quick judges nothing: no verdict after the ratios.
    const ratio = at(/^full stack ÷ module alone, same accept: min \d+\.\d\d ×, median \d+\.\d\d × {2}$/);
    const sameRatio = at(
      /^full stack ÷ module alone with the same calls, same accept: min \d+\.\d\d ×, median \d+\.\d\d × {2}$/,
    );
    expect([only, same, ratio, sameRatio]).toEqual([only, only + 1, only + 2, only + 3]);
    expect(only).toBeGreaterThan(0);
  });

  // A ratio line's two values are the ratio of the minima and that of the medians; the second is the one judged.
  it('judges the ratio line on its median against ≤2×: PASS at or under 2, FAIL above', () => {
    const name = 'full stack ÷ module alone with the same calls, same accept';
    const line = (min: number, median: number) =>
      figureLine(figureOf(name, '×', min, median, { limit: 2 }, true), 2, true);
    expect(line(1.5, 1.8)).toBe(`${name}: min 1.50 ×, median 1.80 ×  [≤ 2 ×: PASS]`);
    // A minimum under the limit does not pass a median above it.
    expect(line(1.5, 2.4)).toBe(`${name}: min 1.50 ×, median 2.40 ×  [≤ 2 ×: FAIL]`);
    expect(figureOf(name, '×', 1.5, 2.4, { limit: 2 }, true).verdict).toBe('FAIL');
    expect(figureLine(figureOf(name, '×', 1.5, 1.8, { limit: 2 }, false), 2, false)).toBe(
      `${name}: min 1.50 ×, median 1.80 ×  `,
    );
  });
});
