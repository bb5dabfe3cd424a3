import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MirrorEntry, MirrorSept } from '../src/index.js';

const PAGE = 4096;
const MIB2 = 2 ** 21;
const GIB = 2 ** 30;

describe('MirrorSept: KVM’s own table of the S-EPT', () => {
  it('walks from the root: the first entry that is not a linked table', () => {
    const mirror = new MirrorSept(3);
    expect(mirror.walk(MIB2 + PAGE, 0)).toEqual({ level: 3, entry: MirrorEntry.FREE });
    mirror.set(3, 0, MirrorEntry.TABLE);
    mirror.set(2, 0, MirrorEntry.TABLE);
    expect(mirror.walk(MIB2 + PAGE, 0)).toEqual({ level: 1, entry: MirrorEntry.FREE });
    mirror.set(1, MIB2, MirrorEntry.TABLE);
    expect(mirror.walk(MIB2 + PAGE, 0)).toEqual({ level: 0, entry: MirrorEntry.FREE });
    mirror.set(0, MIB2 + PAGE, MirrorEntry.PRESENT, 0x1234_5000);
    expect(mirror.walk(MIB2 + PAGE, 0)).toEqual({ level: 0, entry: MirrorEntry.PRESENT });
    expect(mirror.hpaOf(0, MIB2 + PAGE + 12)).toBe(0x1234_5000);
    // A 2M leaf stops the walk for any GPA under it.
    mirror.set(1, 2 * MIB2, MirrorEntry.PRESENT, 0x4000_0000);
    expect(mirror.walk(2 * MIB2 + 5 * PAGE, 0)).toEqual({ level: 1, entry: MirrorEntry.PRESENT });
  });

  it('freezing is a compare-and-exchange from FREE: the second freezer loses', () => {
    const mirror = new MirrorSept(3);
    expect(mirror.tryFreeze(0, PAGE)).toBe(true);
    expect(mirror.tryFreeze(0, PAGE)).toBe(false);
    expect(mirror.frozen()).toEqual([{ gpa: PAGE, level: 0 }]);
    mirror.set(0, PAGE, MirrorEntry.PRESENT, 0x9000);
    expect(mirror.tryFreeze(0, PAGE)).toBe(false);
    expect(mirror.frozen()).toEqual([]);
    expect(mirror.tryFreeze(2, GIB)).toBe(true);
    mirror.set(2, GIB, MirrorEntry.FREE);
    expect(mirror.get(2, GIB)).toBe(MirrorEntry.FREE);
  });

  it('installFrozen ends as set does, whatever was set, frozen or installed before (property)', () => {
    // A few GPAs in two 2M tables under two 1G tables (one above 2^31), at levels 0 and 1.
    const bases = [0, 3 * GIB];
    const gpas = bases.flatMap((base) =>
      [0, 1].flatMap((table) => [0, 1, 2].map((page) => base + table * MIB2 + page * PAGE)),
    );
    const place = fc.record({ level: fc.integer({ min: 0, max: 1 }), gpa: fc.constantFrom(...gpas) });
    const code = fc.constantFrom(
      MirrorEntry.FREE,
      MirrorEntry.TABLE,
      MirrorEntry.FROZEN,
      MirrorEntry.PRESENT,
      MirrorEntry.BLOCKED,
      MirrorEntry.PREMAPPED,
    );
    const hpa = fc.constantFrom(0x7000, 0x4000_0000, 0x1_2345_6000);
    // Installs (the fast path on a frozen entry, set on any other) outnumber the rest, after freezes that succeed.
    const step = fc.oneof(
      fc.record({ op: fc.constant('set' as const), at: place, code, hpa }),
      fc.record({ op: fc.constant('freeze' as const), at: place }),
      fc.record({ op: fc.constant('install' as const), at: place, code, hpa }),
      fc.record({ op: fc.constant('freeze-install' as const), at: place, code, hpa }),
    );
    /**
     * The plain mirror's compare-and-exchange, through get and set only: the reference does not run the code under
     * test (a tryFreeze that froze the wrong entry, or froze one that is not FREE, would agree with itself).
     */
    const plainFreeze = (mirror: MirrorSept, level: number, gpa: number): boolean => {
      if (mirror.get(level, gpa) !== MirrorEntry.FREE) return false;
      mirror.set(level, gpa, MirrorEntry.FROZEN);
      return true;
    };
    /** Everything the API shows of a mirror. */
    const view = (mirror: MirrorSept) => ({
      entries: gpas.flatMap((at) =>
        [0, 1, 2].map((level) => [mirror.get(level, at), mirror.hpaOf(level, at)]),
      ),
      walks: gpas.map((at) => [mirror.walkLevel(at, 0), mirror.walk(at, 1)]),
      leaves: mirror.leaves(0, 4 * GIB),
      mappings: mirror.privateMappings(),
      frozen: mirror.frozen(),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const fast = new MirrorSept(3);
        const plain = new MirrorSept(3);
        for (const mirror of [fast, plain])
          for (const base of bases) {
            mirror.set(3, base, MirrorEntry.TABLE);
            mirror.set(2, base, MirrorEntry.TABLE);
          }
        for (const s of steps) {
          const { level, gpa } = s.at;
          if (s.op === 'set') for (const mirror of [fast, plain]) mirror.set(level, gpa, s.code, s.hpa);
          // expect() only when the two differ, with the same assertions (strict deep equality implies toEqual's):
          // a passing expect() after every step cost vitest about 8 µs of bookkeeping each (issue 14).
          if (s.op === 'freeze' || s.op === 'freeze-install') {
            const frozen = fast.tryFreeze(level, gpa);
            const plainFrozen = plainFreeze(plain, level, gpa);
            if (frozen !== plainFrozen) expect(frozen).toBe(plainFrozen);
          }
          if (s.op === 'install' || s.op === 'freeze-install') {
            fast.installFrozen(level, gpa, s.code, s.hpa);
            plain.set(level, gpa, s.code, s.hpa);
          }
          const seen = view(fast);
          const plainSeen = view(plain);
          if (!isDeepStrictEqual(seen, plainSeen)) expect(seen).toEqual(plainSeen);
        }
        // Then every entry freed (KVM zapping the range) and frozen again. A table's count of used entries shows
        // only here: a count too high keeps the emptied table, so it comes before the tables made again in the order
        // `frozen` lists them (a `used++` on the fast path fails this); a count too low drops a table still in use.
        for (const mirror of [fast, plain])
          for (const gpa of gpas) for (const level of [0, 1]) mirror.set(level, gpa, MirrorEntry.FREE);
        expect(view(fast)).toEqual(view(plain));
        // (A 2M entry is frozen from its first GPA, then found frozen from the others.)
        for (const gpa of gpas)
          for (const level of [0, 1]) {
            const first = level === 0 || gpa % MIB2 === 0;
            expect([fast.tryFreeze(level, gpa), plainFreeze(plain, level, gpa)]).toEqual([first, first]);
          }
        expect(view(fast)).toEqual(view(plain));
      }),
      { numRuns: 200 },
    );
  });

  it('lists leaves in a range at their level; the view leaves out premapped pages', () => {
    const mirror = new MirrorSept(3);
    mirror.set(3, 0, MirrorEntry.TABLE);
    mirror.set(2, 0, MirrorEntry.TABLE);
    mirror.set(1, 0, MirrorEntry.TABLE);
    mirror.set(0, 0, MirrorEntry.PRESENT, 0xa000);
    mirror.set(0, PAGE, MirrorEntry.BLOCKED, 0xb000);
    mirror.set(0, 2 * PAGE, MirrorEntry.PREMAPPED, 0xc000);
    mirror.set(0, 3 * PAGE, MirrorEntry.FROZEN);
    mirror.set(1, MIB2, MirrorEntry.PRESENT, 0x20_0000);
    expect(mirror.leaves(PAGE, MIB2 + PAGE).map((l) => [l.gpa, l.level, l.entry])).toEqual([
      [PAGE, 0, MirrorEntry.BLOCKED],
      [2 * PAGE, 0, MirrorEntry.PREMAPPED],
      [MIB2, 1, MirrorEntry.PRESENT],
    ]);
    expect(mirror.privateMappings()).toEqual([
      { gpa: 0, level: 0, hpa: 0xa000 },
      { gpa: PAGE, level: 0, hpa: 0xb000 },
      { gpa: MIB2, level: 1, hpa: 0x20_0000 },
    ]);
  });

  it('after a DEMOTE: a table and 512 present 4K leaves on the pieces of the 2M page', () => {
    const mirror = new MirrorSept(3);
    mirror.set(3, 0, MirrorEntry.TABLE);
    mirror.set(2, 0, MirrorEntry.TABLE);
    mirror.set(1, MIB2, MirrorEntry.BLOCKED, 0x40_0000);
    mirror.demoted(MIB2);
    expect(mirror.get(1, MIB2)).toBe(MirrorEntry.TABLE);
    const leaves = mirror.leaves(MIB2, 2 * MIB2);
    expect(leaves).toHaveLength(512);
    expect(leaves[511]).toEqual({
      gpa: 2 * MIB2 - PAGE,
      level: 0,
      entry: MirrorEntry.PRESENT,
      hpa: 0x40_0000 + 511 * PAGE,
    });
  });

  it('memory follows what is mapped: a 2M region’s block goes when its last 4K entry does', () => {
    const mirror = new MirrorSept(3);
    mirror.set(0, 5 * PAGE, MirrorEntry.PRESENT, 0x7000);
    mirror.set(0, 5 * PAGE, MirrorEntry.FREE);
    expect(mirror.leaves(0, MIB2)).toEqual([]);
    // A 1 TiB range with nothing mapped costs a handful of look-ups, not one per page.
    expect(mirror.leaves(0, 2 ** 40)).toEqual([]);
  });

  it('answers every walk and entry as a plain model does, whatever was linked, unlinked or set before (property)', () => {
    // GPAs in a few tables at every level, low and above 2^31 and 2^47 (the index arithmetic on large addresses).
    const bases = [0, 3 * GIB, 2 ** 47 + 5 * GIB];
    const gpa = fc
      .tuple(fc.constantFrom(...bases), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }))
      .map(([base, table, page]) => base + table * MIB2 + page * PAGE);
    const code = fc.constantFrom(
      MirrorEntry.FREE,
      MirrorEntry.TABLE,
      MirrorEntry.TABLE,
      MirrorEntry.FROZEN,
      MirrorEntry.PRESENT,
      MirrorEntry.BLOCKED,
    );
    const step = fc.oneof(
      fc.record({ op: fc.constant('set' as const), level: fc.integer({ min: 0, max: 4 }), gpa, code }),
      fc.record({ op: fc.constant('walk' as const), level: fc.integer({ min: 0, max: 3 }), gpa }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 120 }), (steps) => {
        const mirror = new MirrorSept(4);
        // The model: entry per level and aligned GPA.
        const model = new Map<string, number>();
        const span = (level: number): number => PAGE * 512 ** level;
        const key = (level: number, at: number): string => `${level}:${Math.floor(at / span(level))}`;
        const entry = (level: number, at: number): number => model.get(key(level, at)) ?? MirrorEntry.FREE;
        // Every table of the GPAs linked first, so that the steps unlink tables under walks that went through them.
        for (const base of bases)
          for (let table = 0; table < 4; table++)
            for (let level = 4; level >= 1; level--) {
              mirror.set(level, base + table * MIB2, MirrorEntry.TABLE);
              model.set(key(level, base + table * MIB2), MirrorEntry.TABLE);
            }
        for (const s of steps) {
          if (s.op === 'set') {
            mirror.set(s.level, s.gpa, s.code, s.code === MirrorEntry.PRESENT ? 0x7000 : 0);
            model.set(key(s.level, s.gpa), s.code);
            continue;
          }
          let expected = s.level;
          for (let at = 4; at > s.level; at--) {
            if (entry(at, s.gpa) !== MirrorEntry.TABLE) {
              expected = at;
              break;
            }
          }
          expect(mirror.walkLevel(s.gpa, s.level)).toBe(expected);
          expect(mirror.get(expected, s.gpa)).toBe(entry(expected, s.gpa));
        }
      }),
      { numRuns: 300 },
    );
  });
});
