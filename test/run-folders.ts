/**
 * The temporary folders of test runs (`<tmp>/tdxsim-vitest-*`, made by test/global-setup.ts) and the removal of those
 * whose run died without its teardown (SIGKILL, an OOM kill, a CI timeout). A folder's name says whose it is:
 * `tdxsim-vitest-<ns>-<pid>-<start>-XXXXXX`, the pid namespace, pid and start time of the run's vitest process (Linux,
 * from /proc: the namespace's inode with the first 8 digits of the boot's id, since the host's namespace has the same
 * inode on every Linux machine and a TMPDIR may be shared between machines or kept across a reboot; clock ticks after
 * boot; `x` where they cannot be read). The mark is in the name
 * so that it is there from the folder's first moment: one written into the folder afterwards would leave an instant
 * in which the folder of a live run looks unmarked.
 * A folder is left alone while its process lives, so another run on the same machine (a second clone, a helper)
 * keeps its folder. The start time tells a process that reused a dead run's pid from the run itself; a folder made in
 * another pid namespace, on another machine or boot, or by a process that could not read its own (a container sharing
 * /tmp, a host without /proc) names a pid this process cannot ask about, and is treated as an unmarked one.
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const PREFIX = 'tdxsim-vitest-';
/** A run's folder: pid namespace (or `x`), pid, start time (or `x`), then mkdtemp's six characters. */
const MARKED = /^tdxsim-vitest-(\d+(?:_[0-9a-f]{8})?|x)-(\d+)-(\d+|x)-[A-Za-z0-9]{6}$/;
/** A folder of a run from before the mark (mkdtemp's six characters only): its owner cannot be asked. */
const UNMARKED = /^tdxsim-vitest-[A-Za-z0-9]{6}$/;
/**
 * How long an unmarked folder (or one of another pid namespace) must have gone unmodified to be taken for a dead
 * run's: a run takes minutes, but a watch session (`npx vitest`) of an older clone may sit idle for days.
 */
export const UNMARKED_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;

/** Who made a run's folder: the process's pid namespace, pid and start time (`x`: unknown). */
export interface RunMark {
  readonly ns: string;
  readonly pid: number;
  readonly start: string;
}

/** The start of process `pid` (clock ticks after boot, /proc/<pid>/stat field 22), or `x` where unknown. */
export function processStart(pid: number): string {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 'x';
  }
  // Field 2 (the command name, in parentheses) may hold spaces and parentheses: count from the last `)`, field 3 on.
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return start !== undefined && /^\d+$/.test(start) ? start : 'x';
}

/**
 * This process's pid namespace and boot: the inode in `/proc/self/ns/pid` and the first 8 digits of
 * `/proc/sys/kernel/random/boot_id`, as `<inode>_<boot>`, or `x` where either is unknown.
 */
export function pidNamespace(): string {
  try {
    const inode = /^pid:\[(\d+)\]$/.exec(readlinkSync('/proc/self/ns/pid'))?.[1];
    const boot = /^[0-9a-f]{8}/.exec(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'))?.[0];
    return inode === undefined || boot === undefined ? 'x' : `${inode}_${boot}`;
  } catch {
    return 'x';
  }
}

/** This process's mark. */
export function ownMark(): RunMark {
  return { ns: pidNamespace(), pid: process.pid, start: processStart(process.pid) };
}

/** The prefix for `mkdtempSync` of the folder of the run marked `mark` (this process by default). */
export function runFolderPrefix(mark: RunMark = ownMark()): string {
  return `${PREFIX}${mark.ns}-${mark.pid}-${mark.start}-`;
}

/**
 * Whether the process of `mark` (in this process's pid namespace) still runs. A process of another user answers
 * EPERM: alive. A living pid whose start time differs is another process that reused the pid: the run is dead.
 */
export function runIsLive(mark: RunMark): boolean {
  try {
    process.kill(mark.pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (mark.start === 'x') return true;
  const now = processStart(mark.pid);
  return now === 'x' || now === mark.start;
}

/**
 * Removes the folders in `dir` (the system's temporary folder) of test runs that died without their teardown: a
 * marked folder of this pid namespace and boot whose process no longer runs; an unmarked one (a run from before the
 * mark) or one of another namespace or boot once unmodified for {@link UNMARKED_MAX_AGE_MS}. Anything else is left alone, as is a
 * folder that cannot be removed (another user's). Links inside (tsx's cache) are removed, not followed. Answers the
 * names removed.
 */
export function removeDeadRunFolders(
  dir: string,
  { now = Date.now(), ns = pidNamespace(), isLive = runIsLive } = {},
): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(PREFIX)) continue;
    const path = join(dir, name);
    try {
      const stat = lstatSync(path);
      if (!stat.isDirectory()) continue;
      const marked = MARKED.exec(name);
      const old = now - stat.mtimeMs > UNMARKED_MAX_AGE_MS;
      let dead: boolean;
      if (marked === null) dead = UNMARKED.test(name) && old;
      else {
        const mark: RunMark = { ns: marked[1] as string, pid: Number(marked[2]), start: marked[3] as string };
        // Both `x`: a host without /proc on both sides, where a pid is still this host's to ask about.
        dead = mark.ns === ns ? !isLive(mark) : old;
      }
      if (!dead) continue;
      rmSync(path, { recursive: true, force: true });
      removed.push(name);
    } catch {
      // Gone meanwhile (another run's cleanup), or not ours to remove: nothing to do.
    }
  }
  return removed;
}
