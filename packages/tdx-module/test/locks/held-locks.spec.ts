import { describe, expect } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import { HeldLocks } from '../../src/core/held-locks.js';
import { hpHostTryPacked } from '../../src/locks/host-priority-lock.js';
import type { PlainSharexLock } from '../../src/locks/plain-lock.js';
import type { PamtRegion } from '../../src/memory/pamt.js';
import type { SeptTable } from '../../src/sept/sept-table.js';
import type { TdControl } from '../../src/td/td-control.js';

/**
 * HeldLocks joins a lock to the newest record (a plain lock then an SEPT entry, a PAMT walk then OP_STATE). Whatever
 * it joins, the releases must come in the order of a plain stack of the locks taken, newest first; a release that
 * throws stops there and the older locks are dropped unreleased. Every lock here is a stub that logs its release
 * (and the one chosen to throw throws instead of releasing).
 */

/** A word held once shared, and once exclusive, by the host (what the releases expect to find). */
const SHARED_WORD = hpHostTryPacked(0, false) & 0xffff;
const EXCLUSIVE_WORD = hpHostTryPacked(0, true) & 0xffff;

type Op =
  | { kind: 'walk'; level: 0 | 1 | 2; exclusive: boolean; index2m: number; index4k: number }
  | { kind: 'plain'; exclusive: boolean }
  | { kind: 'entry'; index: number }
  /** A plain lock and then an SEPT entry, taken as the locked walk takes them (addPlainThenEntry, or the two adds). */
  | { kind: 'plainThenEntry'; exclusive: boolean; index: number }
  | { kind: 'opState' };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('walk' as const),
    level: fc.constantFrom(0 as const, 1 as const, 2 as const),
    exclusive: fc.boolean(),
    index2m: fc.integer({ min: 0, max: 511 }),
    index4k: fc.integer({ min: 0, max: 511 }),
  }),
  fc.record({ kind: fc.constant('plain' as const), exclusive: fc.boolean() }),
  fc.record({ kind: fc.constant('entry' as const), index: fc.integer({ min: 0, max: 511 }) }),
  fc.record({
    kind: fc.constant('plainThenEntry' as const),
    exclusive: fc.boolean(),
    index: fc.integer({ min: 0, max: 511 }),
  }),
  fc.record({ kind: fc.constant('opState' as const) }),
);

/** One flow: the locks it takes, and which of them (if any) throws when released. */
const flow = fc.record({
  ops: fc.array(op, { maxLength: 40 }),
  throwAt: fc.option(fc.nat(), { nil: undefined }),
});

class StubThrows extends Error {}

/**
 * An array of lock words holding `word` at `index` (what the release reads) that logs each write as
 * `name[index]=word`; a throwing one throws on its first write instead.
 */
function loggedWords(
  name: string,
  index: number,
  word: number,
  log: string[],
  throws: { pending: boolean },
): number[] {
  const words: number[] = [];
  words[index] = word;
  return new Proxy(words, {
    set(target, key, value: number) {
      if (throws.pending) {
        throws.pending = false;
        throw new StubThrows(name);
      }
      log.push(`${name}[${String(key)}]=${value}`);
      target[Number(key)] = value;
      return true;
    },
  });
}

/**
 * Takes the flow's locks in `held` (stubs writing to `log` when released) and answers what a plain stack of them
 * releases, newest first: one list of log lines per lock (a PAMT walk writes three words, or two, or one). With
 * `split`, a plain lock then entry is recorded by addPlain and addSeptEntry, else by addPlainThenEntry.
 */
function takeLocks(
  held: HeldLocks,
  ops: readonly Op[],
  throwAt: number | undefined,
  log: string[],
  split = false,
): string[][] {
  const releases: string[][] = [];
  ops.forEach((o, n) => {
    const throws = { pending: n === throwAt };
    const name = `${o.kind}${n}`;
    switch (o.kind) {
      case 'walk': {
        const word = (atLevel: number) => (o.exclusive && o.level === atLevel ? EXCLUSIVE_WORD : SHARED_WORD);
        const lock1g = loggedWords(`${name}.1g`, 0, word(2), log, throws);
        const lock2m = loggedWords(`${name}.2m`, o.index2m, word(1), log, throws);
        const lock4k = loggedWords(`${name}.4k`, o.index4k, word(0), log, throws);
        const blocks4k: unknown[] = [];
        blocks4k[o.index2m] = { lock: lock4k };
        const region = { lock1g, lock2m, blocks4k } as unknown as PamtRegion;
        held.addPamtWalk(region, o.level, o.exclusive, o.index2m, o.index4k);
        const lines = [`${name}.1g[0]=0`];
        if (o.level <= 1) lines.unshift(`${name}.2m[${o.index2m}]=0`);
        if (o.level === 0) lines.unshift(`${name}.4k[${o.index4k}]=0`);
        releases.push(lines);
        break;
      }
      case 'plain': {
        const release = (how: string) => () => {
          if (throws.pending) throw new StubThrows(name);
          log.push(`${name} ${how}`);
        };
        const lock = { releaseShared: release('shared'), releaseExclusive: release('exclusive') };
        held.addPlain(lock as unknown as PlainSharexLock, o.exclusive);
        releases.push([`${name} ${o.exclusive ? 'exclusive' : 'shared'}`]);
        break;
      }
      case 'entry': {
        const lock = loggedWords(name, o.index, 1, log, throws);
        held.addSeptEntry({ lock } as unknown as SeptTable, o.index);
        releases.push([`${name}[${o.index}]=0`]);
        break;
      }
      case 'plainThenEntry': {
        // The entry's words throw if this op is the one chosen: it is released first (a joined lock before its
        // record's own), and the plain lock of the same op is then dropped unreleased.
        const lock = {
          releaseShared: () => log.push(`${name}.plain shared`),
          releaseExclusive: () => log.push(`${name}.plain exclusive`),
        };
        const table = { lock: loggedWords(`${name}.entry`, o.index, 1, log, throws) } as unknown as SeptTable;
        if (split) {
          held.addPlain(lock as unknown as PlainSharexLock, o.exclusive);
          held.addSeptEntry(table, o.index);
        } else held.addPlainThenEntry(lock as unknown as PlainSharexLock, o.exclusive, table, o.index);
        releases.push([
          `${name}.entry[${o.index}]=0`,
          `${name}.plain ${o.exclusive ? 'exclusive' : 'shared'}`,
        ]);
        break;
      }
      case 'opState': {
        const td = {
          get opStateLock() {
            return SHARED_WORD;
          },
          set opStateLock(word: number) {
            if (throws.pending) throw new StubThrows(name);
            log.push(`${name}=${word}`);
          },
        };
        held.addOpState(td as unknown as TdControl);
        releases.push([`${name}=0`]);
        break;
      }
    }
  });
  return releases.reverse();
}

/** How many records the flow's locks make: an SEPT entry right after a plain lock, OP_STATE right after a walk join. */
function recordCount(ops: readonly Op[]): number {
  let count = 0;
  let joinable: Op['kind'] | undefined;
  for (const o of ops) {
    if (o.kind === 'plainThenEntry') {
      // One record, already joined: nothing joins it.
      count++;
      joinable = undefined;
    } else if (
      (o.kind === 'entry' && joinable === 'plain') ||
      (o.kind === 'opState' && joinable === 'walk')
    ) {
      joinable = undefined;
    } else {
      count++;
      joinable = o.kind;
    }
  }
  return count;
}

describe('HeldLocks', () => {
  test.prop([fc.array(flow, { minLength: 1, maxLength: 4 })], { numRuns: 300 })(
    'releases joined records as a stack of their locks, newest first; a release that throws drops the rest',
    (flows) => {
      // One HeldLocks for every flow, as the module reuses one: what a flow left must not leak into the next.
      // The twin takes each plain lock then entry with the two adds (addPlainThenEntry's general form): counts and
      // releases must be the same.
      const held = new HeldLocks();
      const twin = new HeldLocks();
      for (const { ops, throwAt: pick } of flows) {
        const throwAt = pick === undefined || ops.length === 0 ? undefined : pick % ops.length;
        for (const [records, split] of [
          [held, false],
          [twin, true],
        ] as const) {
          const log: string[] = [];
          const stack = takeLocks(records, ops, throwAt, log, split);
          expect(records.count).toBe(recordCount(ops));
          expect(log).toEqual([]);
          if (throwAt === undefined) {
            records.releaseAll();
            expect(log).toEqual(stack.flat());
          } else {
            expect(() => records.releaseAll()).toThrow(StubThrows);
            // Newest first up to the lock that threw (its own first write), nothing older.
            expect(log).toEqual(stack.slice(0, ops.length - 1 - throwAt).flat());
          }
          // The records are gone: releasing again releases nothing.
          expect(records.count).toBe(0);
          const released = log.length;
          records.releaseAll();
          expect(log.length).toBe(released);
        }
      }
    },
  );
});
