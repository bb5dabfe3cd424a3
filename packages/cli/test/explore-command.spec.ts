/**
 * `tdxsim explore`: races × backends judged against the shipped expectations (the current truth of the
 * built-in backends, known races included), failures shrunk with a replay command that replays them exactly, stale
 * schedules told apart, a user's backend file, shards, reports (JSON against its schema, HTML, JUnit) and argument
 * errors. The runs call the CLI's `main` in this process (what they check is the same, without a process start from
 * source each); the printed replay commands and a user's backend file run as a process, as a user runs them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { fileTempDir } from '../../../test/temp-dir.js';
import {
  DEFAULT_EXPLORE_EXPECTATIONS_FILE,
  readExploreExpectations,
} from '../src/explore/explore-expectations.js';
import { type ExploreReport, readExploreReport } from '../src/explore/explore-report.js';
import { FIXTURES, runCli, runMain } from './run-cli.js';

const dir = fileTempDir('tdxsim-explore-');
/**
 * A race both backends fail by design (NMIs around TD exits under module 1.5 behaviour, judged by its property), one
 * they pass, one that needs KVM's API (n/a on Hyper-V).
 */
const SMALL = [
  '--race',
  'nmis-around-td-exits,fault-racing-zap,page-add-contention',
  '--vmm',
  'kvm,hyperv-512',
  '--schedules',
  '40',
];

/** The argv of a printed replay command (`tdxsim explore ...`), quotes removed. */
function argvOf(command: string): string[] {
  const words = command.match(/'[^']*'|\S+/g) ?? [];
  return words.slice(1).map((w) => w.replace(/^'|'$/g, ''));
}

describe('tdxsim explore', () => {
  let report: ExploreReport;

  it('the shipped expectations hold the known races: exit 0, every report written', async () => {
    const files = { json: join(dir, 'e.json'), html: join(dir, 'e.html'), junit: join(dir, 'e.xml') };
    const run = await runMain([
      'explore',
      ...SMALL,
      '--json',
      files.json,
      '--html',
      files.html,
      '--junit',
      files.junit,
    ]);
    expect(run.stderr).toMatch(/explore: 6 cells — 3 races × 2 backends, pct, 40 schedules per cell, seed 1/);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^nmis-around-td-exits\/kvm\s+property\s+as expected\s+\d+\s+\d+\s/m);
    expect(run.stdout).toMatch(/^fault-racing-zap\/kvm\s+ok\s+as expected\s+40\s+\d+\s/m);
    expect(run.stdout).toMatch(/^page-add-contention\/hyperv-512\s+n\/a\s+as expected\s+0\s+0\s/m);
    expect(run.stdout).toMatch(
      /failures as expected \(known races\): nmis-around-td-exits\/kvm \(property\), nmis-around-td-exits\/hyperv-512 \(property\) — replay one: tdxsim explore --race nmis-around-td-exits --vmm kvm --seed 1 --replay v1:/,
    );
    expect(run.stdout).toMatch(
      /^6 cells \(pct, seed 1, 40 schedules each\): 3 ok, 2 with a failure, 1 n\/a, 0 error; \d+ schedules in .* — every outcome as expected$/m,
    );
    report = readExploreReport(files.json);
    const kvmNmis = report.results.find((r) => r.id === 'nmis-around-td-exits/kvm');
    expect(kvmNmis).toMatchObject({ outcome: 'property', expected: 'property' });
    expect(kvmNmis?.failure?.message).toMatch(/^NMI 1 was handled before NMI 0, which arrived first/);
    expect(kvmNmis?.failure?.schedule).toMatch(/^v1:[0-9.*]*@[0-9a-f]{8}$/);
    expect(kvmNmis?.failure?.trace.length).toBeGreaterThan(10);
    expect(kvmNmis?.failure?.timeline.calls.length).toBeGreaterThan(5);
    expect(report.summary).toMatchObject({
      cells: 6,
      ok: 3,
      failed: 2,
      notApplicable: 1,
      error: 0,
      changes: 0,
    });
    const html = readFileSync(files.html, 'utf8');
    expect(html).toContain('<h1>tdxsim explore report</h1>');
    expect(html).toContain('every outcome as expected');
    expect(html).toMatch(/<details class="scenario" id="c-nmis-around-td-exits_kvm">/);
    expect(html).toContain('<svg class="timeline"');
    const junit = new XMLParser({ ignoreAttributes: false }).parse(readFileSync(files.junit, 'utf8'));
    expect(junit.testsuites['@_tests']).toBe('6');
    expect(junit.testsuites['@_failures']).toBe('0');
    // Skipped: the n/a cell and the two failures as expected.
    expect(junit.testsuites['@_skipped']).toBe('3');
  });

  it('the printed replay command replays the failure exactly: same kind, same message, same trace, not stale', async () => {
    const failure = report.results.find((r) => r.id === 'nmis-around-td-exits/kvm')?.failure;
    if (failure === null || failure === undefined) throw new Error('no failure');
    // In this process, as the printed words: a printed replay command as a process, its file reloaded and its exit
    // code reaching the shell, is the user's backend's test below (a process start is about 0.7 CPU-seconds; issue 14).
    const run = await runMain(argvOf(failure.replay));
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`schedule ${failure.schedule}: ${failure.kind}: ${failure.message}`);
    expect(run.stdout).not.toContain('WARNING');
    // Its trace ends as the report's does (the report writes the testkit's lines, the replay the CLI's).
    const lastSeamcall = failure.trace
      .filter((l) => / host /.test(l))
      .at(-1)
      ?.split(' ')[2];
    expect(run.stdout).toContain(`SEAMCALL ${lastSeamcall}`);
  });

  it('a schedule of other code replays with a warning that it is stale, and exits 1', async () => {
    // Not a printed replay command: main in this process says the same.
    const run = await runMain([
      'explore',
      '--race',
      'fault-racing-zap',
      '--vmm',
      'hyperv-512',
      '--replay',
      'v1:1.1@0badcafe',
    ]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      /every check passed\nWARNING: the schedule is stale: the replay interleaved differently from the recording \(checksum [0-9a-f]{8}, recorded 0badcafe\)/,
    );
  });

  it("a user's backend with a race: found, exit 1 (nothing expected of it), the replay reloads the file", async () => {
    const file = join(FIXTURES, 'lockless-zap-vmm.ts');
    const json = join(dir, 'custom.json');
    const run = await runCli([
      'explore',
      '--backend',
      file,
      '--race',
      'fault-racing-zap',
      '--scheduler',
      'random',
      '--schedules',
      '200',
      '--json',
      json,
    ]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^fault-racing-zap\/lockless-zap-vmm\s+view\s+unexpected/m);
    const failure = readExploreReport(json).results[0]?.failure;
    expect(failure?.message).toMatch(/believes 0x100000 is mapped private/);
    expect(failure?.replay).toContain(`--backend ${file}`);
    const replay = await runCli(argvOf(failure?.replay ?? ''));
    expect(replay.code).toBe(1);
    expect(replay.stdout).toContain(`view: ${failure?.message}`);
  });

  it('--shard splits the cells; --write-expect writes what the run saw and exits 0; a changed expectation exits 1', async () => {
    const written = join(dir, 'written.json');
    const first = await runMain([
      'explore',
      ...SMALL,
      '--shard',
      '1/2',
      '--no-expect',
      '--write-expect',
      written,
    ]);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/3 cells \(shard 1\/2 of 6\)/);
    const rules = readExploreExpectations(written).expect;
    expect(rules).toContainEqual(
      expect.objectContaining({ cells: 'nmis-around-td-exits/kvm', outcome: 'property' }),
    );
    expect(rules).toContainEqual({ cells: '*/kvm', outcome: 'ok' });
    // The same rules with the KVM race marked fixed (as the module's NMI fix would make it): the known failure is now a change.
    const edited = join(dir, 'edited.json');
    const file = JSON.parse(readFileSync(written, 'utf8')) as {
      expect: { cells: string; outcome: string }[];
    };
    file.expect = file.expect.filter((r) => r.cells !== 'nmis-around-td-exits/kvm');
    writeFileSync(edited, JSON.stringify(file));
    const second = await runMain(['explore', ...SMALL, '--shard', '1/2', '--expect', edited]);
    expect(second.code).toBe(1);
    expect(second.stdout).toMatch(/^nmis-around-td-exits\/kvm\s+property\s+CHANGED from ok/m);
    expect(second.stdout).toMatch(
      /replay: tdxsim explore --race nmis-around-td-exits --vmm kvm --seed 1 --replay v1:/,
    );
  });

  it('a budget smaller than the expectations were seen with: an expected failure it misses is "not reached", exit 0; as large a budget that misses it exits 1', async () => {
    // The shipped file was written from 100 schedules per cell; seed 1's PCT finds the KVM NMI race after more than 5.
    const files = { json: join(dir, 'short.json'), junit: join(dir, 'short.xml') };
    const short = ['explore', '--race', 'nmis-around-td-exits', '--vmm', 'kvm', '--schedules', '5'];
    const run = await runMain([...short, '--json', files.json, '--junit', files.junit]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /nmis-around-td-exits\/kvm: ok \(not reached: property was seen within 100 schedules, 5 run\)/,
    );
    expect(run.stdout).toMatch(
      /^nmis-around-td-exits\/kvm\s+ok\s+not reached \(property within 100\)\s+5\s/m,
    );
    expect(run.stdout).toMatch(
      /every outcome as expected \(1 expected failure not reached: seen within 100 schedules; give --schedules 100 or more to check it\)$/m,
    );
    const saved = readExploreReport(files.json);
    expect(saved.results[0]).toMatchObject({ outcome: 'ok', expected: 'property', expectedWithin: 100 });
    expect(saved.summary.changes).toBe(0);
    const junit = new XMLParser({ ignoreAttributes: false }).parse(readFileSync(files.junit, 'utf8'));
    expect(junit.testsuites['@_failures']).toBe('0');
    expect(junit.testsuites['@_skipped']).toBe('1');
    // The same rules, seen with 5 schedules: missing the race within 5 is now a change.
    const five = join(dir, 'seen-with-5.json');
    writeFileSync(
      five,
      JSON.stringify({ ...readExploreExpectations(DEFAULT_EXPLORE_EXPECTATIONS_FILE), schedules: 5 }),
    );
    const strict = await runMain([...short, '--no-expect', '--expect', five]);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/^nmis-around-td-exits\/kvm\s+ok\s+CHANGED from property\s/m);
  });

  it('bad command lines exit 2 with one line naming the problem, before anything runs', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({
        schema: 'tdxsim-explore-expectations/1',
        expect: [{ cells: 'a/b/c', outcome: 'ok' }],
      }),
    );
    const badBudget = join(dir, 'bad-budget.json');
    writeFileSync(
      badBudget,
      JSON.stringify({ schema: 'tdxsim-explore-expectations/1', schedules: 0, expect: [] }),
    );
    for (const [args, message] of [
      [['--race', 'no-such-race'], /unknown race "no-such-race" \(valid: fault-racing-zap, /],
      [['--replay', 'v1:1'], /--replay needs exactly one --race and one --vmm/],
      [
        ['--race', 'fault-racing-zap', '--vmm', 'kvm', '--replay', 'v2:1'],
        /not a schedule \(expected the prefix v1:\)/,
      ],
      [['--expect', bad], /expect\[0\]: "cells" must be a pattern race\/vmm/],
      [['--expect', badBudget], /"schedules" must be a positive integer .*got 0/],
      [['--scheduler', 'dfs'], /expected one of: random, pct/],
    ] as const) {
      const run = await runMain(['explore', ...args]);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(message);
    }
  });

  it('the shipped expectations name every built-in backend explored by default', () => {
    const rules = readExploreExpectations(DEFAULT_EXPLORE_EXPECTATIONS_FILE).expect;
    expect(rules.map((r) => r.cells)).toEqual(expect.arrayContaining(['*/kvm', '*/hyperv-512']));
  });
});
