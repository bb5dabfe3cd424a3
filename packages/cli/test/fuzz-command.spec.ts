/**
 * `tdxsim fuzz` (and its shortcut `pnpm fuzz`): the testkit's campaign with the CLI's parser. CI's campaign and a
 * printed replay command run as a process, as `pnpm fuzz` and a user run them; the other campaigns and the replay of
 * a concurrent case call the CLI's `main` in this process (the same output and exit code, without a process start
 * each).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, runCli, runMain } from './run-cli.js';

describe('tdxsim fuzz', () => {
  it('pnpm fuzz is the built tdxsim fuzz (a long campaign runs the compiled code, as the installed command does)', () => {
    const scripts = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).scripts as Record<
      string,
      string
    >;
    expect(scripts.fuzz).toBe('tsc -b && node packages/cli/bin/tdxsim.js fuzz');
    expect(scripts.explore).toBe('tsc -b && node packages/cli/bin/tdxsim.js explore');
    expect(scripts['explore:write-expect']).toBe(
      'tsc -b && node packages/cli/bin/tdxsim.js explore --write-expect packages/cli/expectations/explore-races.json',
    );
  });

  // CI's short campaign, run as `pnpm fuzz` runs it: 8,000 cases of the default mix — generated VMM behaviour ×
  // preset × workload × GPAW against scripted MapGPA replies, and one in eight a multi-vCPU workload under a drawn
  // schedule on KVM or Hyper-V (about the time 10,000 sequential cases took).
  it('8,000 mixed cases: no safety violation for the presets that validate R11', async () => {
    const run = await runCli(['fuzz', '--runs', '8000', '--seed', '20261121']);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toBe('fuzz: seed 20261121, 8000 cases');
    expect(lines[lines.length - 1]).toMatch(
      /^fuzz: 8000 cases \(sequential and concurrent\) in [\d.]+ s \(\d+\/s\), no violation$/,
    );
    console.log(lines[lines.length - 1]);
  });

  it('--kind sequential: only scripted MapGPA replies, as before', async () => {
    const run = await runMain(['fuzz', '--kind', 'sequential', '--runs', '300', '--seed', '5']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^fuzz: 300 cases in [\d.]+ s \(\d+\/s\), no violation$/m);
  });

  it('prints the seed, the shrunk case and how to replay it, and exits 1; the replay exits 1 too', async () => {
    const failure = await runMain([
      'fuzz',
      '--kind',
      'sequential',
      '--runs',
      '300',
      '--seed',
      '77',
      '--preset',
      'coconutSvsm',
    ]);
    expect(failure.code).toBe(1);
    expect(failure.stdout).toMatch(/^fuzz: seed 77, 300 cases\n/);
    expect(failure.stdout).toMatch(
      /fuzz: FAILED after \d+ cases \(seed 77\); shrunk counterexample:\n\{"behaviour":/,
    );
    expect(failure.stdout).toMatch(
      /^ {2}tdxsim fuzz --kind sequential --seed 77 --path [\d:]+ --preset coconutSvsm$/m,
    );
    const replay = /tdxsim fuzz --replay '(.*)'/.exec(failure.stdout)?.[1];
    expect(replay).toBeDefined();
    const replayed = await runCli(['fuzz', '--replay', replay ?? '']);
    expect(replayed.code).toBe(1);
    expect(replayed.stdout).toMatch(/^UNSAFE:$/m);
  });

  it('--shard K/N runs its share of the campaign from seed + K − 1', async () => {
    const run = await runMain(['fuzz', '--runs', '400', '--seed', '42', '--shard', '2/4']);
    expect(run.code).toBe(0);
    expect(run.stdout.split('\n')[0]).toBe('fuzz: seed 43, 100 cases (shard 2/4 of campaign seed 42)');
    expect(run.stdout).toMatch(/^fuzz: 100 cases \(sequential and concurrent\) in /m);
  });

  it('--concurrent: multi-vCPU cases under drawn schedules on KVM and Hyper-V; a concurrent case replays', async () => {
    const run = await runMain(['fuzz', '--concurrent', '--runs', '20', '--seed', '3']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^fuzz --concurrent: 20 cases in [\d.]+ s \(\d+\/s\), no violation$/m);
    const fuzzCase = {
      kind: 'concurrent',
      backend: 'hyperv',
      guest: 'linux',
      memoryPages: 1536,
      plans: [
        [{ op: 'to-shared', page: 0, pages: 4 }],
        [
          { op: 'read', page: 2, pages: 1 },
          { op: 'to-private', page: 1, pages: 2 },
        ],
      ],
      scheduler: 'pct',
      scheduleSeed: 5,
    };
    // In this process: that a printed replay command runs as a process and its exit code reaches the shell is the
    // test above's (a process start is about 0.7 CPU-seconds; issue 14); this one checks what a concurrent case replays.
    const replay = await runMain(['fuzz', '--replay', JSON.stringify(fuzzCase)]);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/^vcpu0 to-shared 0\+4: ok$/m);
    expect(replay.stdout.trim().split('\n').at(-1)).toBe('safe');
  });

  it('argument errors exit 2', async () => {
    const vmm = await runMain(['fuzz', '--kind', 'sequential', '--vmm', 'kvm']);
    expect(vmm.code).toBe(2);
    expect(vmm.stderr.trim()).toBe(
      'tdxsim: --vmm chooses the backends of concurrent cases: not with --kind sequential',
    );
    const kinds = await runMain(['fuzz', '--concurrent', '--kind', 'mixed']);
    expect(kinds.code).toBe(2);
    expect(kinds.stderr.trim()).toBe('tdxsim: --concurrent is --kind concurrent: not with --kind mixed');
    const badVmm = await runMain(['fuzz', '--concurrent', '--vmm', 'xen']);
    expect(badVmm.stderr.trim()).toMatch(
      /^tdxsim: unknown vmm "xen" \(valid: kvm, hyperv, kvm-without-mmu-lock/,
    );
    const both = await runMain(['fuzz', '--runs', '10', '--minutes', '1']);
    expect(both.code).toBe(2);
    expect(both.stderr.trim()).toBe('tdxsim: give --runs or --minutes, not both');
    const preset = await runMain(['fuzz', '--preset', 'windows']);
    expect(preset.stderr.trim()).toMatch(/^tdxsim: unknown preset "windows" \(valid: linux, /);
    const replay = await runMain(['fuzz', '--replay', '{not json']);
    expect(replay.code).toBe(2);
    expect(replay.stderr.trim()).toMatch(/^tdxsim: --replay: not a fuzz case: /);
  });
});
