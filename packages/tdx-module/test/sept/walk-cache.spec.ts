/**
 * The S-EPT walk remembers the table its last walk reached and starts there for the next walk to the same level in
 * the same range. Property: on random trees changed at random (tables attached and detached, entries at every level
 * set to every state, a tree cloned and changed apart from its original), every walk answers exactly what a walk
 * from the root, written here without any memory, answers (the tree's reused cursor too). And neither keeps a table
 * detached from the tree alive. After each step every table of both trees counts the child tables it holds.
 */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { SEPT_WALK_STOPS, SeptState } from '../../src/abi/sept-state.js';
import { type SeptTable, septIndex } from '../../src/sept/sept-table.js';
import { SeptCursor, SeptTree } from '../../src/sept/sept-tree.js';
import { collectGarbage } from '../support/collect-garbage.js';

const STATES = Object.values(SeptState);
/** States an entry with a child table may have (reference §3). */
const WITH_CHILD = [SeptState.NL_MAPPED, SeptState.NL_BLOCKED];

/**
 * GPAs the sequences use: few enough that walks and changes meet on the same paths. 0x7f_ffff_f000 is entry 511 at
 * levels 0 to 2 (a table's last entry: the end of loops over a table's children).
 */
const GPAS = [0, 0x1000, 0x20_0000, 0x20_3000, 0x4000_0000, 0x4020_0000, 0x7f_ffff_f000, 0x80_0000_0000];

/** The walk of reference tdx-module.md §4.2 from the root, remembering nothing. */
function referenceWalk(
  tree: SeptTree,
  gpa: number,
  targetLevel: number,
): [SeptTable, number, number, number] {
  let table = tree.root;
  let level = tree.pwl;
  for (;;) {
    const index = septIndex(gpa, level);
    const state = table.state[index] as number;
    if (level === targetLevel || SEPT_WALK_STOPS[state] === 1) return [table, index, level, state];
    table = table.child[index] as SeptTable;
    level--;
  }
}

/** The tables of `tree` and of its subtrees, by depth-first order (how a step names one). */
function tablesOf(tree: SeptTree): SeptTable[] {
  return [...tree.tables()].map((item) => item.table);
}

/**
 * Every table of `tree` counts the child tables it holds (a copy of the tree visits that many), and the child list
 * that every table of 4K leaves shares stays empty.
 */
function expectChildCounts(tree: SeptTree): void {
  // expect() only when a count is wrong, with the same assertion: called after every step of every run, a passing
  // expect() per table was most of the file's 13,000 (about 8 µs of vitest's bookkeeping each; issue 14).
  for (const { table, baseGpa } of tree.tables()) {
    const children = table.child.filter((c) => c !== undefined);
    const where = (): string => `the level-${table.level} table at GPA 0x${baseGpa.toString(16)}`;
    if (table.childTables !== children.length)
      expect(table.childTables, `child tables counted by ${where()}`).toBe(children.length);
    if (table.level === 0 && children.length > 0)
      expect(children, `children of ${where()}, a table of 4K leaves`).toEqual([]);
  }
}

type Step =
  | { readonly kind: 'walk'; readonly gpa: number; readonly level: number }
  | { readonly kind: 'attach'; readonly table: number; readonly gpa: number }
  | { readonly kind: 'detach'; readonly table: number; readonly gpa: number }
  | { readonly kind: 'state'; readonly table: number; readonly gpa: number; readonly state: number }
  | { readonly kind: 'clone' };

const gpaIndex = fc.nat(GPAS.length - 1);
const tableIndex = fc.nat(40);
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant('walk' as const), gpa: gpaIndex, level: fc.nat(4) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('attach' as const), table: tableIndex, gpa: gpaIndex }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('detach' as const), table: tableIndex, gpa: gpaIndex }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('state' as const),
      table: tableIndex,
      gpa: gpaIndex,
      state: fc.constantFrom(...STATES),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'clone' as const }) },
);

test('a walk that starts where the last one went answers as a walk from the root', () => {
  fc.assert(
    fc.property(fc.constantFrom(3, 4), fc.array(step, { minLength: 1, maxLength: 80 }), (pwl, steps) => {
      let tree = new SeptTree(pwl, 0x1000_0000);
      let other: SeptTree | undefined;
      let nextPage = 0x1000_1000;
      const cursor = new SeptCursor(tree.root);
      for (const s of steps) {
        // After each step (the last one's checked after the loop): the trees' child counts, a clone's too.
        expectChildCounts(tree);
        if (other !== undefined) expectChildCounts(other);
        const gpa = s.kind === 'clone' ? 0 : (GPAS[s.gpa] as number);
        if (s.kind === 'walk') {
          const level = Math.min(s.level, pwl);
          for (const t of other === undefined ? [tree] : [tree, other]) {
            const walked = t.walkInto(cursor, gpa, level);
            const [table, index, reached, state] = referenceWalk(t, gpa, level);
            expect(walked.table).toBe(table);
            expect([walked.index, walked.level, walked.state, walked.gpa]).toEqual([
              index,
              reached,
              state,
              gpa,
            ]);
            // The tree's own reused cursor answers the same.
            const reused = t.walkReused(gpa, level);
            expect(reused.table).toBe(table);
            expect([reused.index, reused.level, reused.state, reused.gpa]).toEqual([
              index,
              reached,
              state,
              gpa,
            ]);
          }
          continue;
        }
        if (s.kind === 'clone') {
          // The copy is changed from now on; the original is still walked and must not see those changes.
          other = tree;
          tree = tree.clone();
          continue;
        }
        const tables = tablesOf(tree);
        const table = tables[s.table % tables.length] as SeptTable;
        const index = septIndex(gpa, table.level);
        const child = table.child[index];
        if (s.kind === 'attach') {
          if (table.level > 0 && table.state[index] === SeptState.FREE && child === undefined) {
            tree.attachChild(table, index, nextPage);
            nextPage += 0x1000;
          }
        } else if (s.kind === 'detach') {
          if (child !== undefined) tree.detachChild(table, index);
        } else if (
          child === undefined
            ? s.state !== SeptState.NL_MAPPED && s.state !== SeptState.NL_BLOCKED
            : WITH_CHILD.includes(s.state as never)
        ) {
          // Entries with a child table are NL_MAPPED or NL_BLOCKED; entries without one are anything else.
          table.setState(index, s.state);
        }
      }
      expectChildCounts(tree);
      if (other !== undefined) expectChildCounts(other);
    }),
    { numRuns: 500 },
  );
});

/**
 * A tree with one table below the root (for the GPA 0x1000), walked to that table's level with `walk`; returns a weak
 * reference to the table (made here, so that no local of the caller keeps it).
 */
function walkedChild(tree: SeptTree, walk: (gpa: number, level: number) => unknown): WeakRef<SeptTable> {
  const child = tree.attachChild(tree.root, 0, 0x1000_1000);
  walk(0x1000, tree.pwl - 1);
  return new WeakRef(child);
}

test.each([
  ['the walk shortcut (a walk into a cursor of its own)', 'walkInto'],
  ['the reused cursor and the walk shortcut', 'walkReused'],
] as const)('a detached table is not kept alive by %s', async (_, how) => {
  const gc = collectGarbage();
  const tree = new SeptTree(3, 0x1000_0000);
  const cursor = new SeptCursor(tree.root);
  const ref = walkedChild(tree, (gpa, level) =>
    how === 'walkInto' ? tree.walkInto(cursor, gpa, level) : tree.walkReused(gpa, level),
  );
  tree.detachChild(tree.root, 0);
  cursor.table = tree.root;
  // A weak reference made in this job keeps its target until the job ends.
  await new Promise<void>((resolve) => setImmediate(resolve));
  gc();
  expect(ref.deref()).toBeUndefined();
  // Walks after it answer from the tree as it is now.
  expect(tree.walkReused(0x1000, 2)).toMatchObject({
    table: tree.root,
    index: 0,
    level: 3,
    state: SeptState.FREE,
  });
});

test('tables of 4K leaves share one child list, which nothing writes', () => {
  const tree = new SeptTree(4, 0x1000_0000);
  let table = tree.root;
  for (let page = 0x1000_1000; table.level > 0; page += 0x1000) table = tree.attachChild(table, 0, page);
  const parent = tree.walkReused(0, 1).table;
  const other = tree.attachChild(parent, 1, 0x2000_0000);
  expect([table.level, other.level]).toEqual([0, 0]);
  expect(other.child).toBe(table.child);
  // Below level 0 there is nothing to attach: refused before the shared list could be written.
  expect(() => tree.attachChild(table, 3, 0x2000_1000)).toThrow(
    /model bug: attach below a table of 4K leaves/,
  );
  expect(() => tree.attachChild(parent, 1, 0x2000_1000)).toThrow(/model bug: attach over a child table/);
  // A clone's tables of 4K leaves share the same list.
  const copy = tree.clone();
  expect(copy.walkReused(0, 0).table.child).toBe(table.child);
  expect(table.child.filter((c) => c !== undefined)).toEqual([]);
  expect(table.child).toHaveLength(512);
});
