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

const hex = (value: bigint | undefined): string => `0x${(value ?? 0n).toString(16)}`;

/**
 * A module call as `kind leaf status rcx` (not RCX for TDH.VP.ENTER: the TDVPR's address differs between the two
 * TDs), a TD exit as `td-exit reason rdx r8`, or undefined for the rest (VMM replies, notes).
 */
function callKey(event: TraceEvent): string | undefined {
  switch (event.kind) {
    case 'seamcall':
    case 'tdcall':
      return `${event.kind} ${event.leaf} ${hex(event.status)}${event.leaf === 'TDH.VP.ENTER' ? '' : ` ${hex(event.args.rcx)}`}`;
    case 'td-exit':
      return `td-exit ${event.reason} ${hex(event.regs.rdx)} ${hex(event.regs.r8)}`;
    default:
      return undefined;
  }
}

/**
 * The keys of the job's calls and exits: from the first TDG.MEM.PAGE.ACCEPT on (before it, the two runs build TDs of
 * different vCPU counts and only the full stack boots a guest), every call and exit, none left out.
 */
function jobKeys(events: readonly TraceEvent[]): string[] {
  const first = events.findIndex((e) => e.kind === 'tdcall' && e.leaf === 'TDG.MEM.PAGE.ACCEPT');
  return events
    .slice(Math.max(first, 0))
    .map(callKey)
    .filter((key): key is string => key !== undefined);
}

/** How many keys there are of each `kind leaf` (or `td-exit reason`) with its status, for a readable summary. */
function countKinds(keys: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const key of keys) {
    const [kind, name, status] = key.split(' ');
    const what =
      kind === 'td-exit'
        ? key.slice(0, key.indexOf(' 0x'))
        : `${kind} ${name} ${status === '0x0' ? 'ok' : 'error'}`;
    counts[what] = (counts[what] ?? 0) + 1;
  }
  return counts;
}

// The benchmark measures; these tests check what it runs and prints (a time is never asserted).
describe("tdxsim bench: the module alone with the full stack's calls", () => {
  it('makes, one by one, the module calls and exits the full stack makes for the same 2M accept', async () => {
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
    const expected = jobKeys(fullStack.trace);
    expect(expected.length).toBeGreaterThan(0);
    // What the full stack makes for 1,024 pages of 2M: the refused 1G ACCEPT of each GiB, then per page the ACCEPT
    // that exits, AUG, VP.ENTER (returning the next exit: the last one has not returned), the ACCEPT again; SEPT.ADD
    // of the level-3 and level-2 tables of the first GiB and the level-2 one of the second.
    expect(countKinds(expected)).toEqual({
      'tdcall TDG.MEM.PAGE.ACCEPT error': 2,
      'td-exit EPT violation (ACCEPT)': 1024,
      'seamcall TDH.VP.ENTER error': 1024,
      'seamcall TDH.MEM.SEPT.ADD ok': 3,
      'seamcall TDH.MEM.PAGE.AUG ok': 1024,
      'tdcall TDG.MEM.PAGE.ACCEPT ok': 1024,
    });
    // The same calls with the same status and RCX, the same exits with the same RDX and R8, in the same order.
    expect(jobKeys(events)).toEqual(expected);
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
