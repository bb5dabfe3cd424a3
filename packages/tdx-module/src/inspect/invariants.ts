import { levelSpan } from '../abi/page-level.js';
import { PamtPageType, pamtPageTypeName } from '../abi/page-type.js';
import { SeptState, septStateInfo } from '../abi/sept-state.js';
import { LifecycleState } from '../abi/td-state.js';
import type { ModuleState } from '../core/module-state.js';
import { assertKnownOptions, assertOneOf } from '../errors.js';
import { hpHeld } from '../locks/host-priority-lock.js';
import { TDEL } from '../locks/sept-entry-lock.js';
import { assertSameCopy } from '../package-copy.js';
import type { SeptTable } from '../sept/sept-table.js';
import { SeptCursor, type SeptTree } from '../sept/sept-tree.js';
import type { SharedEpt } from '../td/shared-ept.js';
import type { TdControl } from '../td/td-control.js';
import type { TdxModule } from '../tdx-module.js';
import { assertModule } from './assert-module.js';
import { HpaUsers } from './hpa-users.js';
import { PageUsers } from './page-users.js';

/** One broken invariant: a stable `rule` name and what was found. */
export interface InvariantViolation {
  readonly rule:
    | 'tree-shape'
    | 'child-count'
    | 'pamt-sept-agreement'
    | 'hpa-owned-twice'
    | 'shared-ept-private-alias'
    | 'shared-ept-aliasing'
    | 'shared-ept-td-page'
    | 'lock-held'
    | 'epoch-refcount';
  readonly message: string;
}

/** Four FREE entries' states read as one 32-bit word (see {@link SeptTable.entryWords}). */
const FREE_WORD = SeptState.FREE * 0x01010101;

/** Bytes a host page spans at PAMT level 0, 1, 2 (4K, 2M, 1G): the base of a page from its level. */
const PAGE_SPAN = [2 ** 12, 2 ** 21, 2 ** 30] as const;

/** 4K units of a leaf at level 0, 1, 2 (a lookup: `512 ** level` is a call on every page of a check). */
const LEAF_UNITS = [1, 512, 512 * 512] as const;

/**
 * What a host page's user is (the kinds of {@link checkInvariants}' users, named only in messages). A user is a number:
 * its record (in {@link PageUsers}) × {@link RUN} + an entry index. The users of one SEPT table's entries (its guest
 * pages, its child tables) share one record of kind {@link USER_GUEST_PAGES} or {@link USER_SEPT_TABLES}, made at the
 * table's first such entry, whose GPA is the table's base: a page costs no record, and a check no record per page.
 */
const USER_GUEST_PAGES = 0;
const USER_TDR = 1;
const USER_TDCS = 2;
const USER_VCPU = 3;
const USER_VCPU_TDCX = 4;
const USER_SEPT_TABLES = 5;
const USER_TEARDOWN = 6;
/** Users a record numbers: one per entry of a SEPT table. */
const RUN = 512;

/**
 * The rules about the shared EPT. The VMM owns that table and writes it directly (as on hardware), so the module
 * cannot enforce them: they say what a correct VMM keeps, and a hostile one may break them without the module's own
 * state (SEPT, PAMT, locks) becoming inconsistent.
 */
export const VMM_OWNED_INVARIANT_RULES: ReadonlySet<InvariantViolation['rule']> = new Set([
  'shared-ept-private-alias',
  'shared-ept-aliasing',
  'shared-ept-td-page',
]);

/**
 * Checks the module's state for the invariants a correct model keeps after every step: the SEPT tree's shape,
 * PAMT and SEPT agreeing page by page, no host page owned or mapped twice, no guest frame mapped both private and
 * shared, TD child counts, epoch reference counts, and no lock left held (an HP flag alone is not a hold).
 * Pass `{ locks: false }` while flows are deliberately parked mid-way.
 */
export function checkInvariants(module: TdxModule, options: { locks?: boolean } = {}): InvariantViolation[] {
  assertSameCopy('module', module);
  assertModule(module);
  assertKnownOptions('checkInvariants', options, ['locks']);
  if (options.locks !== undefined) assertOneOf('options.locks', options.locks, [true, false]);
  // The two tables are reused from the previous check (this function runs to completion: no other check can be using
  // them), cleared before use: a check of a small TD, as a fuzz case ends with, then allocates no typed array.
  const check = new InvariantCheck(module.state, options.locks !== false);
  const { pamt } = module.state;
  for (const td of module.state.tds.values()) check.td(td);
  // The check before, if one is running (a check made from inside another, whatever would do that), comes back after.
  const outer = visiting;
  visiting = check;
  try {
    pamt.forEachUsed(visitUsed);
  } finally {
    visiting = outer;
  }
  return check.out;
}

/** The check {@link visitUsed} reports to while {@link checkInvariants} walks the PAMT (synchronously). */
let visiting: InvariantCheck | undefined;
/**
 * One visitor for every check, not a closure per check: the PAMT walk (visitBlock, visitEntry) embeds the closure it
 * calls in its optimized code, which a dead per-check closure deoptimized ("weak objects"), and each new closure's
 * own optimized code was dropped with it: both were compiled again in scenario after scenario of a matrix worker.
 */
const visitUsed = (hpa: number, level: number, type: number, owner: number, lock: number): void =>
  (visiting as InvariantCheck).visitUsed(hpa, level, type, owner, lock);

const hex = (n: number): string => `0x${n.toString(16)}`;
/** A TD's name in a message (a check that finds nothing builds no string). */
const tdName = (td: TdControl): string => `TD ${hex(td.tdr)}`;

/**
 * One run of {@link checkInvariants}: the violations found and who references each host page. Split into small
 * methods (one per part of the state) so that each compiles on its own: one function of them all was slow to
 * optimize and re-optimize. HPA and level → who references it, from the TD side. Nothing is allocated per page or
 * per check: a user is a number (a record of kind, TD and GPA or index, and an entry of a table's record), named only
 * when a message needs it.
 */
class InvariantCheck {
  readonly out: InvariantViolation[] = [];
  readonly #m: ModuleState;
  readonly #locks: boolean;
  readonly #referenced: HpaUsers;
  readonly #users: PageUsers;
  /**
   * Scratch of {@link #sept}: the children of the table being checked, by index, the first {@link #childCount} of them
   * (counted, not cut: setting an array's length is a call).
   */
  readonly #children: number[] = [];
  #childCount = 0;
  /** The table {@link #table} is checking: its base GPA, the GPA span of an entry, its records of users (-1: none). */
  #tableBase = 0;
  #tableSpan = 0;
  #pagesRecord = -1;
  #tablesRecord = -1;

  constructor(m: ModuleState, locks: boolean) {
    this.#m = m;
    this.#locks = locks;
    this.#referenced = spareTables.referenced;
    this.#users = spareTables.users;
    this.#referenced.clear();
    this.#users.reset();
  }

  fail(rule: InvariantViolation['rule'], message: string): void {
    this.out.push({ rule, message });
  }

  #describe(user: number): string {
    const users = this.#users;
    const record = Math.floor(user / RUN);
    const entry = user - record * RUN;
    const td = `TD ${hex(users.tdr(record))}`;
    const at = users.at(record);
    switch (users.kind(record)) {
      case USER_TDR:
        return `${td} TDR`;
      case USER_TDCS:
        return `${td} TDCS`;
      case USER_VCPU:
        return `${td} vCPU ${at}`;
      case USER_VCPU_TDCX:
        return `${td} vCPU ${at} TDCX`;
      case USER_SEPT_TABLES:
        return `${td} SEPT table ${hex(at + entry * users.span(record))}/${users.level(record)}`;
      case USER_TEARDOWN:
        return `${td} (teardown)`;
      default:
        return `${td} GPA ${hex(at + entry * users.span(record))}`;
    }
  }

  /** A user of its own (a control page, a torn-down TD): a record with entry 0. */
  #addUser(kind: number, tdr: number, at: number): number {
    return this.#users.add(kind, tdr, at, 0, 0) * RUN;
  }

  /**
   * The record of the users of the table {@link #table} is checking (guest pages or child tables), made on first use:
   * an entry's GPA is the table's base + entry × the span {@link #sept} gave it; a child table's level is the table's
   * level − 1, kept in a byte (a corrupted level is named as it was when each child table had a record of its own).
   */
  #runOf(kind: typeof USER_GUEST_PAGES | typeof USER_SEPT_TABLES, td: TdControl, table: SeptTable): number {
    if (kind === USER_GUEST_PAGES) {
      if (this.#pagesRecord < 0)
        this.#pagesRecord = this.#users.add(kind, td.tdr, this.#tableBase, 0, this.#tableSpan);
      return this.#pagesRecord;
    }
    if (this.#tablesRecord < 0)
      this.#tablesRecord = this.#users.add(kind, td.tdr, this.#tableBase, table.level - 1, this.#tableSpan);
    return this.#tablesRecord;
  }

  #reference(hpa: number, level: number, type: number, owner: number, user: number): void {
    const previous = this.#referenced.swap(hpa, level, user);
    if (previous !== undefined)
      this.fail(
        'hpa-owned-twice',
        `${hex(hpa)} (level ${level}) used by ${this.#describe(previous)} and ${this.#describe(user)}`,
      );
    // The entry's type and owner from one slot lookup (what getType and getOwner each read).
    const { block, index } = this.#m.pamt.slot(hpa, level as 0 | 1 | 2, false);
    const pamtType = block === undefined ? PamtPageType.NDA : (block.type[index] as number);
    const pamtOwner = block === undefined ? 0 : (block.owner[index] as number);
    if (pamtType !== type || pamtOwner !== owner) {
      this.fail(
        'pamt-sept-agreement',
        `${this.#describe(user)}: PAMT of ${hex(hpa)} at level ${level} is ${pamtPageTypeName(pamtType)} owner ${hex(pamtOwner)}, expected ${pamtPageTypeName(type)} owner ${hex(owner)}`,
      );
    }
  }

  #named(hpa: number, level: number, type: number, owner: number, kind: number, tdr: number, at = 0): void {
    this.#reference(hpa, level, type, owner, this.#addUser(kind, tdr, at));
  }

  /** Every rule about one TD. */
  td(td: TdControl): void {
    this.#named(td.tdr, 0, PamtPageType.TDR, 0, USER_TDR, td.tdr);
    if (td.lifecycle === LifecycleState.TEARDOWN) {
      this.#teardown(td);
      return;
    }
    let units = td.tdcx.length;
    for (const page of td.tdcx) this.#named(page, 0, PamtPageType.TDCX, td.tdr, USER_TDCS, td.tdr);
    for (const vcpu of td.vcpus.values()) {
      units += 1 + vcpu.tdcx.length;
      this.#named(vcpu.tdvpr, 0, PamtPageType.TDVPR, td.tdr, USER_VCPU, td.tdr, vcpu.index);
      for (const page of vcpu.tdcx)
        this.#named(page, 0, PamtPageType.TDCX, td.tdr, USER_VCPU_TDCX, td.tdr, vcpu.index);
    }
    this.#epochsAndLocks(td);
    if (td.sept !== undefined) units += this.#sept(td, td.sept);
    if (units !== td.childCount)
      this.fail('child-count', `${tdName(td)}: child count ${td.childCount}, pages found ${units}`);
    const shared = this.#m.sharedEpts.get(td.tdr);
    if (shared !== undefined) this.#sharedEpt(td, shared);
  }

  /**
   * A torn-down TD's SEPT and vCPUs are dead: what must still agree is the child count with the pages PAMT says it
   * owns, which RECLAIM gives back one by one.
   */
  #teardown(td: TdControl): void {
    let owned = 0;
    const teardownUser = this.#addUser(USER_TEARDOWN, td.tdr, 0);
    this.#m.pamt.forEachUsed((hpa, level, type, owner) => {
      if (owner !== td.tdr || type === PamtPageType.NDA || type === PamtPageType.TDR) return;
      owned += 512 ** level;
      this.#referenced.set(hpa, level, teardownUser);
    });
    if (owned !== td.childCount)
      this.fail('child-count', `${tdName(td)} (teardown): child count ${td.childCount}, PAMT pages ${owned}`);
  }

  #epochsAndLocks(td: TdControl): void {
    // Counted in two numbers, not a list per check.
    let even = 0;
    let odd = 0;
    for (const vcpu of td.vcpus.values()) {
      if (vcpu.run !== 'in-guest') continue;
      if ((vcpu.epoch & 1) === 0) even++;
      else odd++;
    }
    if (even !== td.epochRefcount[0] || odd !== td.epochRefcount[1]) {
      this.fail(
        'epoch-refcount',
        `${tdName(td)}: refcounts ${td.epochRefcount.join('/')} but vCPUs in guest ${even}/${odd}`,
      );
    }
    if (this.#locks) {
      if (!td.septTreeLock.free)
        this.fail('lock-held', `${tdName(td)}: SEPT tree lock word ${td.septTreeLock.word}`);
      if (!td.epochLock.free) this.fail('lock-held', `${tdName(td)}: epoch lock word ${td.epochLock.word}`);
      if (hpHeld(td.opStateLock))
        this.fail('lock-held', `${tdName(td)}: OP_STATE lock word ${td.opStateLock}`);
    }
  }

  /**
   * The SEPT tree's shape, depth first (each table before the tables below it, those in entry order); returns the
   * 4K units its tables (the root excepted) and leaves make.
   */
  #sept(td: TdControl, sept: SeptTree): number {
    let units = 0;
    let tables = 0;
    // A stack of tables still to check: a table's children are pushed last first.
    const stack: SeptTable[] = [sept.root];
    const bases: number[] = [0];
    for (let table = stack.pop(); table !== undefined; table = stack.pop()) {
      const baseGpa = bases.pop() as number;
      tables++;
      if (table !== sept.root) units += 1;
      const span = levelSpan(table.level);
      const children = this.#children;
      units += this.#table(td, table, baseGpa, span, children);
      for (let at = this.#childCount - 1; at >= 0; at--) {
        const i = children[at] as number;
        stack.push(table.child[i] as SeptTable);
        bases.push(baseGpa + i * span);
      }
    }
    if (tables !== sept.tableCount)
      this.fail('tree-shape', `${tdName(td)}: table count ${sept.tableCount} != ${tables}`);
    return units;
  }

  /**
   * One SEPT table's entries; lists the indexes of its entries with a child table in `children` (their count in
   * {@link #childCount}); returns its leaves' 4K units.
   */
  #table(td: TdControl, table: SeptTable, baseGpa: number, span: number, children: number[]): number {
    let units = 0;
    let nonFree = 0;
    let found = 0;
    const words = table.entryWords;
    const child = table.child;
    this.#tableBase = baseGpa;
    this.#tableSpan = span;
    this.#pagesRecord = -1;
    this.#tablesRecord = -1;
    for (let word = 0; word < 128; word++) {
      const first = word * 4;
      // Most entries: four FREE, unlocked, counter-free entries with no child break no rule below (the same test as
      // entry by entry, four at a time: states, lock bits and accept counters read as 32-bit words).
      if (
        words[256 + word] === FREE_WORD &&
        words[384 + word] === 0 &&
        words[2 * word] === 0 &&
        words[2 * word + 1] === 0 &&
        child[first] === undefined &&
        child[first + 1] === undefined &&
        child[first + 2] === undefined &&
        child[first + 3] === undefined
      )
        continue;
      for (let i = first; i < first + 4; i++) {
        const state = table.state[i] as number;
        if (child[i] !== undefined) children[found++] = i;
        else if (state === SeptState.FREE && table.lock[i] === 0 && table.acceptCounter[i] === 0) continue;
        if (state !== SeptState.FREE) nonFree++;
        units += this.#entry(td, table, i, baseGpa + i * span);
      }
    }
    if (nonFree !== table.nonFree)
      this.fail('tree-shape', `${tdName(td)}: table non-free count ${table.nonFree} != ${nonFree}`);
    // A copy of the tree (checkpoints) visits as many children as the table counts.
    this.#childCount = found;
    if (found !== table.childTables)
      this.fail('tree-shape', `${tdName(td)}: table child count ${table.childTables} != ${found}`);
    return units;
  }

  /** One SEPT entry that is not FREE or has something attached; returns the 4K units of a leaf. */
  #entry(td: TdControl, table: SeptTable, i: number, gpa: number): number {
    const state = table.state[i] as number;
    let units = 0;
    if (this.#locks && ((table.lock[i] as number) & TDEL) !== 0) {
      this.fail('lock-held', `${tdName(td)}: SEPT entry ${hex(gpa)} level ${table.level} locked`);
    }
    const info = septStateInfo(state);
    const child = table.child[i];
    if (state === SeptState.NL_MAPPED || state === SeptState.NL_BLOCKED) {
      if (child === undefined || child.level !== table.level - 1 || child.pageHpa !== table.hpa[i]) {
        this.fail(
          'tree-shape',
          `${tdName(td)}: non-leaf ${hex(gpa)} level ${table.level} has no matching child table`,
        );
      } else {
        const user = this.#runOf(USER_SEPT_TABLES, td, table) * RUN + i;
        this.#reference(child.pageHpa, 0, PamtPageType.EPT, td.tdr, user);
      }
    } else if (child !== undefined) {
      this.fail(
        'tree-shape',
        `${tdName(td)}: ${info.name} entry ${hex(gpa)} level ${table.level} has a child table`,
      );
    }
    if (info.leaf) {
      if (table.level > 2) this.fail('tree-shape', `${tdName(td)}: leaf at level ${table.level}`);
      const hpa = table.hpa[i] as number;
      units += LEAF_UNITS[table.level as 0 | 1 | 2] ?? 512 ** table.level;
      this.#reference(
        hpa,
        table.level,
        PamtPageType.REG,
        td.tdr,
        this.#runOf(USER_GUEST_PAGES, td, table) * RUN + i,
      );
    }
    if (table.level !== 1 && (table.acceptCounter[i] as number) !== 0) {
      this.fail('tree-shape', `${tdName(td)}: accept counter on a level-${table.level} entry`);
    }
    return units;
  }

  #sharedEpt(td: TdControl, shared: SharedEpt): void {
    const sept = td.sept;
    const pamt = this.#m.pamt;
    const frames = spareFrames;
    shared.entriesInto(frames);
    const hosts = new Map<number, number>();
    const cursor = sept === undefined ? undefined : new SeptCursor(sept.root);
    for (let k = 0; k < frames.length; k += 2) {
      const frame = frames[k] as number;
      const hpa = frames[k + 1] as number;
      // A walk per shared frame: cheaper than listing every 4K frame of every private 2M/1G leaf.
      if (sept !== undefined && septStateInfo(sept.walkInto(cursor as SeptCursor, frame, 0).state).leaf)
        this.fail('shared-ept-private-alias', `${tdName(td)}: frame ${hex(frame)} mapped private and shared`);
      const other = hosts.get(hpa);
      if (other !== undefined)
        this.fail(
          'shared-ept-aliasing',
          `${tdName(td)}: host page ${hex(hpa)} shared at ${hex(other)} and ${hex(frame)}`,
        );
      hosts.set(hpa, frame);
      const level = pamt.leafLevelOf(hpa);
      if (pamt.getType(hpa - (hpa % PAGE_SPAN[level]), level) !== PamtPageType.NDA) {
        this.fail(
          'shared-ept-td-page',
          `${tdName(td)}: shared frame ${hex(frame)} maps TD-owned host page ${hex(hpa)}`,
        );
      }
    }
    // Not held between checks (a TD may share millions of frames).
    frames.length = 0;
  }

  /** Every used PAMT entry: no lock left held, and none that nothing references (for forEachUsed). */
  visitUsed(hpa: number, level: number, type: number, _owner: number, lock: number): void {
    if (this.#locks && hpHeld(lock)) this.fail('lock-held', `PAMT ${hex(hpa)} level ${level} lock ${lock}`);
    if (type !== PamtPageType.NDA && this.#referenced.get(hpa, level) === undefined) {
      this.fail(
        'pamt-sept-agreement',
        `PAMT ${hex(hpa)} level ${level} is ${pamtPageTypeName(type)} but nothing uses it`,
      );
    }
  }
}

/** The shared frames and their host pages that {@link InvariantCheck}'s shared-EPT rules read, a list reused by each check. */
const spareFrames: number[] = [];

/** The tables of users {@link checkInvariants} fills, kept for the next check. */
const spareTables = { referenced: new HpaUsers(), users: new PageUsers() };

/** Throws an Error listing every violation; for tests that check after every step. */
export function assertInvariants(module: TdxModule, options: { locks?: boolean } = {}): void {
  const violations = checkInvariants(module, options);
  if (violations.length > 0) {
    throw new Error(
      `model invariants broken:\n${violations.map((v) => `  [${v.rule}] ${v.message}`).join('\n')}`,
    );
  }
}
