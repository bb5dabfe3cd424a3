import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/guest-left-waiting.ts', import.meta.url));

/** Runs the fixture as its own process: only a real process shows what happens when Node's event loop empties. */
function runFixture(mode: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(
    process.execPath,
    ['--conditions=@tdxsim/source', '--import', 'tsx', FIXTURE, mode],
    { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } },
  );
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
