import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, inject, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/guest-left-waiting.ts', import.meta.url));

/**
 * How node runs the fixture. When the global setup has built the packages: its TypeScript stripped (typescript's
 * transpileModule) and run by plain Node against the built package, as a user's compiled program, two fifths of the
 * CPU of a process that loads tsx and the package's sources (0.5 s against 1.3 s; issue 14). The JavaScript goes to
 * the repository's gitignored `.fixtures-build/`, as the README blocks go to `.readme-blocks/`, where
 * `@tdxsim/tdx-module` resolves; each run overwrites it. From source through tsx when the build failed.
 */
const BUILT = fileURLToPath(
  new URL('../../../.fixtures-build/tdx-module/guest-left-waiting.mjs', import.meta.url),
);
let fixtureArgs: string[] = ['--conditions=@tdxsim/source', '--import', 'tsx', FIXTURE];

beforeAll(() => {
  if (inject('cliBuild') !== 'dist') return;
  const ts = createRequire(import.meta.url)('typescript') as typeof import('typescript');
  const { outputText } = ts.transpileModule(readFileSync(FIXTURE, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  mkdirSync(dirname(BUILT), { recursive: true });
  writeFileSync(BUILT, outputText);
  fixtureArgs = [BUILT];
});

/** Runs the fixture as its own process: only a real process shows what happens when Node's event loop empties. */
function runFixture(mode: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...fixtureArgs, mode], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('guest code left waiting on a vCPU nothing will enter', () => {
  it('a vCPU with no host thread fails the guest with a typed error naming the vCPU, not a silent exit 13', () => {
    const { status, stdout, stderr } = runFixture('never-run');
    expect(status).toBe(1);
    expect(stdout).not.toContain('unreachable');
    expect(stderr).toContain('TdxSimError');
    expect(stderr).toContain("code: 'VCPU_NOT_RESUMED'");
    expect(stderr).toMatch(/waits on vCPU 1 \(TDVPR 0x[0-9a-f]+\), which no host thread runs/);
  });

  it('the error is catchable: the program goes on and exits normally', () => {
    const { status, stdout } = runFixture('caught');
    expect(status).toBe(0);
    expect(stdout).toMatch(/^VCPU_NOT_RESUMED: guest code waits on vCPU 1 /);
    expect(stdout).toContain('unreachable unless caught');
  });

  it('every guest left waiting fails, in the order they parked; a guest resumed before is not among them', () => {
    const { status, stdout } = runFixture('two-left');
    expect(status).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^guest code waits on vCPU 2 /);
    expect(lines[1]).toMatch(/^guest code waits on vCPU 1 /);
    expect(lines[2]).toBe('unreachable unless caught');
  });

  it('a VMM whose exit handler never answers leaves the guest failed with VCPU_NOT_RESUMED when nothing is left', () => {
    const { status, stderr } = runFixture('host-hangs');
    expect(status).toBe(1);
    expect(stderr).toContain('vCPU 0 exited and the VMM never entered it again');
  });
});
