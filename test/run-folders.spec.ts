import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import {
  ownMark,
  processStart,
  type RunMark,
  removeDeadRunFolders,
  runFolderPrefix,
  runIsLive,
  UNMARKED_MAX_AGE_MS,
} from './run-folders.js';
import { testTempDir } from './temp-dir.js';

/** The pid of a process that has ended (a child that ran and was reaped). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  expect(child.status).toBe(0);
  return child.pid as number;
}

/** A folder `name` made in `dir` with a file in it (a run's leftovers), its path. */
function plant(dir: string, name: string): string {
  const path = join(dir, name);
  mkdirSync(path);
  writeFileSync(join(path, 'left'), 'x');
  return path;
}

/** A run's folder as the global setup makes it, for `mark`. */
const runFolder = (dir: string, mark: RunMark): string => mkdtempSync(join(dir, runFolderPrefix(mark)));
const name = (path: string): string => path.slice(path.lastIndexOf('/') + 1);
const linux = existsSync('/proc/self/stat');

describe('the temporary folders of runs killed without their teardown (test/global-setup.ts)', () => {
  it("removes a dead run's folder, keeps a live run's, leaves other names alone", () => {
    const tmp = testTempDir('tdxsim-run-folders-');
    const own = ownMark();
    const live = runFolder(tmp, own);
    const dead = runFolder(tmp, { ...own, pid: deadPid(), start: linux ? '1' : 'x' });
    writeFileSync(join(dead, 'left'), 'x');
    // The tsx cache is linked from a run's folder: removing the folder removes the link, not the cache.
    const cache = plant(tmp, 'tsx-cache');
    symlinkSync(cache, join(dead, 'tsx-0'));
    const others = [
      plant(tmp, 'tdxsim-vitest-notarun'),
      plant(tmp, 'tdxsim-kvm-abcdef'),
      plant(tmp, `tdxsim-vitest-${own.ns}-${deadPid()}-1`),
    ];
    writeFileSync(join(tmp, `tdxsim-vitest-${own.ns}-${deadPid()}-x-abcdef`), 'a file, not a folder');
    for (const path of others) utimesSync(path, 0, 0);

    expect(removeDeadRunFolders(tmp)).toEqual([name(dead)]);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(join(cache, 'left'))).toBe(true);
    for (const path of others) expect(existsSync(path)).toBe(true);
  });

  it.runIf(linux)('a live pid with another start time is a process that reused a dead run\u2019s pid', () => {
    const own = ownMark();
    expect(own.start).toMatch(/^\d+$/);
    expect(processStart(process.pid)).toBe(own.start);
    expect(runIsLive(own)).toBe(true);
    expect(runIsLive({ ...own, start: String(Number(own.start) + 1) })).toBe(false);
    // Start unknown (a run on a system without /proc): only whether the pid lives.
    expect(runIsLive({ ...own, start: 'x' })).toBe(true);
    const tmp = testTempDir('tdxsim-run-folders-');
    const reused = runFolder(tmp, { ...own, start: String(Number(own.start) + 1) });
    expect(removeDeadRunFolders(tmp)).toEqual([name(reused)]);
  });

  it('a process of another user (kill answers EPERM) is alive; one that is gone (ESRCH) is dead', () => {
    const pid = deadPid();
    expect(runIsLive({ ns: 'x', pid, start: 'x' })).toBe(false);
    // As root every process can be signalled: the answer an ordinary user gets for another user's process, made here.
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => {
      throw Object.assign(new Error('kill EPERM'), { code: 'EPERM' });
    });
    try {
      expect(runIsLive({ ns: 'x', pid, start: 'x' })).toBe(true);
      expect(kill).toHaveBeenCalledWith(pid, 0);
    } finally {
      kill.mockRestore();
    }
  });

  it('an unmarked folder (a run from before the mark) or one of another pid namespace goes only once a week old', () => {
    const tmp = testTempDir('tdxsim-run-folders-');
    // Another namespace, the same namespace on another boot, a process that could not read its namespace.
    const fresh = [
      plant(tmp, 'tdxsim-vitest-Fresh1'),
      plant(tmp, `tdxsim-vitest-7-${deadPid()}-1-Fresh2`),
      plant(tmp, `tdxsim-vitest-4026531836_0badc0de-${deadPid()}-1-Fresh3`),
      plant(tmp, `tdxsim-vitest-x-${deadPid()}-x-Fresh4`),
    ];
    const old = [
      plant(tmp, 'tdxsim-vitest-Old123'),
      plant(tmp, `tdxsim-vitest-7-${process.pid}-1-Old456`),
      plant(tmp, `tdxsim-vitest-4026531836_0badc0de-${process.pid}-1-Old789`),
      plant(tmp, `tdxsim-vitest-x-${process.pid}-x-OldABC`),
    ];
    const now = Date.now();
    const longAgo = (now - UNMARKED_MAX_AGE_MS - 60_000) / 1000;
    for (const path of old) utimesSync(path, longAgo, longAgo);
    // Another pid namespace's folder is never asked about, whatever its pid does here.
    const isLive = (mark: RunMark) => {
      throw new Error(`asked about ${mark.pid}`);
    };
    expect(removeDeadRunFolders(tmp, { now, ns: '4026531836_1234abcd', isLive }).sort()).toEqual(
      old.map(name).sort(),
    );
    for (const path of fresh) expect(existsSync(path)).toBe(true);
  });

  it('a host without /proc on both sides (`x`): the pid is still asked about', () => {
    const tmp = testTempDir('tdxsim-run-folders-');
    const dead = plant(tmp, `tdxsim-vitest-x-${deadPid()}-x-abcdef`);
    const live = plant(tmp, `tdxsim-vitest-x-${process.pid}-x-ghijkl`);
    const isLive = (mark: RunMark) => mark.pid === process.pid;
    expect(removeDeadRunFolders(tmp, { ns: 'x', isLive })).toEqual([name(dead)]);
    expect(existsSync(live)).toBe(true);
  });
});
