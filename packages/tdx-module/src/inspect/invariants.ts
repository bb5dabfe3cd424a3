import { PamtPageType, pamtPageTypeName } from '../abi/page-type.js';
import { SeptState, septStateInfo } from '../abi/sept-state.js';
import { LifecycleState } from '../abi/td-state.js';
import { assertKnownOptions, assertOneOf } from '../errors.js';
import { hpHeld } from '../locks/host-priority-lock.js';
import { TDEL } from '../locks/sept-entry-lock.js';
import { assertSameCopy } from '../package-copy.js';
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

/** What a host page's user is (the kinds of {@link checkInvariants}' users, named only in messages). */
const USER_GUEST_PAGE = 0;
const USER_TDR = 1;
const USER_TDCS = 2;
const USER_VCPU = 3;
const USER_VCPU_TDCX = 4;
const USER_SEPT_TABLE = 5;
const USER_TEARDOWN = 6;

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
  const m = module.state;
  const out: InvariantViolation[] = [];
  const fail = (rule: InvariantViolation['rule'], message: string): void => {
    out.push({ rule, message });
  };
  const hex = (n: number): string => `0x${n.toString(16)}`;
  // HPA and level → who references it, from the TD side. Nothing is allocated per page or per check: a user is a
  // kind, its TD and a GPA or index, kept as numbers and named only when a message needs it.
  // The two tables are reused from the previous check (this function runs to completion: no other check can be using
  // them), cleared before use: a check of a small TD, as a fuzz case ends with, then allocates no typed array.
  const { referenced, users } = spareTables;
  referenced.clear();
  users.reset();
  const describe = (user: number): string => {
    const td = `TD ${hex(users.tdr(user))}`;
    const at = users.at(user);
    switch (users.kind(user)) {
      case USER_TDR:
        return `${td} TDR`;
      case USER_TDCS:
        return `${td} TDCS`;
      case USER_VCPU:
        return `${td} vCPU ${at}`;
      case USER_VCPU_TDCX:
        return `${td} vCPU ${at} TDCX`;
      case USER_SEPT_TABLE:
        return `${td} SEPT table ${hex(at)}/${users.level(user)}`;
      case USER_TEARDOWN:
        return `${td} (teardown)`;
      default:
        return `${td} GPA ${hex(at)}`;
    }
  };
  const addUser = (kind: number, tdr: number, at: number, level = 0): number =>
    users.add(kind, tdr, at, level);
  const reference = (hpa: number, level: number, type: number, owner: number, user: number): void => {
    const previous = referenced.get(hpa, level);
    if (previous !== undefined)
      fail(
        'hpa-owned-twice',
        `${hex(hpa)} (level ${level}) used by ${describe(previous)} and ${describe(user)}`,
      );
    referenced.set(hpa, level, user);
    const pamtType = m.pamt.getType(hpa, level as 0 | 1 | 2);
    const pamtOwner = m.pamt.getOwner(hpa, level as 0 | 1 | 2);
    if (pamtType !== type || pamtOwner !== owner) {
      fail(
        'pamt-sept-agreement',
        `${describe(user)}: PAMT of ${hex(hpa)} at level ${level} is ${pamtPageTypeName(pamtType)} owner ${hex(pamtOwner)}, expected ${pamtPageTypeName(type)} owner ${hex(owner)}`,
      );
    }
  };
  const named = (
    hpa: number,
    level: number,
    type: number,
    owner: number,
    kind: number,
    tdr: number,
    at = 0,
  ): void => reference(hpa, level, type, owner, addUser(kind, tdr, at));

  for (const td of m.tds.values()) {
    // Named only for a message: a check that finds nothing builds no string.
    const tdName = (): string => `TD ${hex(td.tdr)}`;
    named(td.tdr, 0, PamtPageType.TDR, 0, USER_TDR, td.tdr);
    if (td.lifecycle === LifecycleState.TEARDOWN) {
      // A torn-down TD's SEPT and vCPUs are dead: what must still agree is the child count with the pages PAMT
      // says it owns, which RECLAIM gives back one by one.
      let owned = 0;
      const teardownUser = addUser(USER_TEARDOWN, td.tdr, 0);
      m.pamt.forEachUsed((hpa, level, type, owner) => {
        if (owner !== td.tdr || type === PamtPageType.NDA || type === PamtPageType.TDR) return;
        owned += 512 ** level;
        referenced.set(hpa, level, teardownUser);
      });
      if (owned !== td.childCount)
        fail('child-count', `${tdName()} (teardown): child count ${td.childCount}, PAMT pages ${owned}`);
      continue;
    }
    let units = td.tdcx.length;
    for (const page of td.tdcx) named(page, 0, PamtPageType.TDCX, td.tdr, USER_TDCS, td.tdr);
    for (const vcpu of td.vcpus.values()) {
      units += 1 + vcpu.tdcx.length;
      named(vcpu.tdvpr, 0, PamtPageType.TDVPR, td.tdr, USER_VCPU, td.tdr, vcpu.index);
      for (const page of vcpu.tdcx)
        named(page, 0, PamtPageType.TDCX, td.tdr, USER_VCPU_TDCX, td.tdr, vcpu.index);
    }
    const inGuest = [0, 0];
    for (const vcpu of td.vcpus.values()) {
      if (vcpu.run === 'in-guest') inGuest[vcpu.epoch & 1] = (inGuest[vcpu.epoch & 1] ?? 0) + 1;
    }
    if (inGuest[0] !== td.epochRefcount[0] || inGuest[1] !== td.epochRefcount[1]) {
      fail(
        'epoch-refcount',
        `${tdName()}: refcounts ${td.epochRefcount.join('/')} but vCPUs in guest ${inGuest.join('/')}`,
      );
    }
    if (options.locks !== false) {
      if (!td.septTreeLock.free)
        fail('lock-held', `${tdName()}: SEPT tree lock word ${td.septTreeLock.word}`);
      if (!td.epochLock.free) fail('lock-held', `${tdName()}: epoch lock word ${td.epochLock.word}`);
      if (hpHeld(td.opStateLock)) fail('lock-held', `${tdName()}: OP_STATE lock word ${td.opStateLock}`);
    }
    const sept = td.sept;
    if (sept !== undefined) {
      let tables = 0;
      for (const { table, baseGpa } of sept.tables()) {
        tables++;
        if (table !== sept.root) units += 1;
        let nonFree = 0;
        const span = 2 ** (12 + 9 * table.level);
        for (let i = 0; i < 512; i++) {
          const state = table.state[i] as number;
          if (
            state === SeptState.FREE &&
            table.child[i] === undefined &&
            (table.lock[i] as number) === 0 &&
            (table.acceptCounter[i] as number) === 0
          )
            continue; // most entries: a free one with nothing attached breaks no rule below
          const gpa = baseGpa + i * span;
          if (state !== SeptState.FREE) nonFree++;
          if (options.locks !== false && ((table.lock[i] as number) & TDEL) !== 0) {
            fail('lock-held', `${tdName()}: SEPT entry ${hex(gpa)} level ${table.level} locked`);
          }
          const info = septStateInfo(state);
          const child = table.child[i];
          if (state === SeptState.NL_MAPPED || state === SeptState.NL_BLOCKED) {
            if (child === undefined || child.level !== table.level - 1 || child.pageHpa !== table.hpa[i]) {
              fail(
                'tree-shape',
                `${tdName()}: non-leaf ${hex(gpa)} level ${table.level} has no matching child table`,
              );
            } else {
              const user = addUser(USER_SEPT_TABLE, td.tdr, gpa, table.level - 1);
              reference(child.pageHpa, 0, PamtPageType.EPT, td.tdr, user);
            }
          } else if (child !== undefined) {
            fail(
              'tree-shape',
              `${tdName()}: ${info.name} entry ${hex(gpa)} level ${table.level} has a child table`,
            );
          }
          if (info.leaf) {
            if (table.level > 2) fail('tree-shape', `${tdName()}: leaf at level ${table.level}`);
            const hpa = table.hpa[i] as number;
            units += 512 ** table.level;
            reference(hpa, table.level, PamtPageType.REG, td.tdr, addUser(USER_GUEST_PAGE, td.tdr, gpa));
          }
          if (table.level !== 1 && (table.acceptCounter[i] as number) !== 0) {
            fail('tree-shape', `${tdName()}: accept counter on a level-${table.level} entry`);
          }
        }
        if (nonFree !== table.nonFree)
          fail('tree-shape', `${tdName()}: table non-free count ${table.nonFree} != ${nonFree}`);
      }
      if (tables !== sept.tableCount)
        fail('tree-shape', `${tdName()}: table count ${sept.tableCount} != ${tables}`);
    }
    if (units !== td.childCount)
      fail('child-count', `${tdName()}: child count ${td.childCount}, pages found ${units}`);
    const shared = m.sharedEpts.get(td.tdr);
    if (shared !== undefined) {
      const hosts = new Map<number, number>();
      for (const [frame, hpa] of shared.entries()) {
        // A walk per shared frame: cheaper than listing every 4K frame of every private 2M/1G leaf.
        if (sept !== undefined && septStateInfo(sept.walk(frame, 0).state).leaf)
          fail('shared-ept-private-alias', `${tdName()}: frame ${hex(frame)} mapped private and shared`);
        const other = hosts.get(hpa);
        if (other !== undefined)
          fail(
            'shared-ept-aliasing',
            `${tdName()}: host page ${hex(hpa)} shared at ${hex(other)} and ${hex(frame)}`,
          );
        hosts.set(hpa, frame);
        const { level, base } = m.pamt.leafOf(hpa);
        if (m.pamt.getType(base, level) !== PamtPageType.NDA) {
          fail(
            'shared-ept-td-page',
            `${tdName()}: shared frame ${hex(frame)} maps TD-owned host page ${hex(hpa)}`,
          );
        }
      }
    }
  }
  m.pamt.forEachUsed((hpa, level, type, _owner, lock) => {
    if (options.locks !== false && hpHeld(lock))
      fail('lock-held', `PAMT ${hex(hpa)} level ${level} lock ${lock}`);
    if (type !== PamtPageType.NDA && referenced.get(hpa, level) === undefined) {
      fail(
        'pamt-sept-agreement',
        `PAMT ${hex(hpa)} level ${level} is ${pamtPageTypeName(type)} but nothing uses it`,
      );
    }
  });
  return out;
}

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
