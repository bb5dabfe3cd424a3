/**
 * An independent reference model of the Secure-EPT conversion flows of the TDX module 1.5.01, written from
 * shared/reference/tdx-module.md only (it imports nothing from src/). It predicts, for one SEAMCALL or TDCALL, the
 * exact status (base code + operand or level), the §4.3 details of walk and state failures, and the new entry
 * states. The TD is RUNNABLE with GPAW 48 and PWL 3, has one vCPU, and host calls never race (no lock is ever
 * busy), so the lock steps of §5 always pass.
 */

/** Page-walk level of the TD (GPAW 48 → 4-level EPT). */
export const PWL = 3;

/** Status codes, §1.2. */
export const S = {
  SUCCESS: 0x0000000000000000n,
  OPERAND_INVALID: 0xc000010000000000n,
  OPERAND_BUSY: 0x8000020000000000n,
  PREVIOUS_TLB_EPOCH_BUSY: 0x8000020100000000n,
  PAGE_METADATA_INCORRECT: 0xc000030000000000n,
  EPT_WALK_FAILED: 0xc0000b0000000000n,
  GPA_RANGE_NOT_BLOCKED: 0xc0000b0600000000n,
  GPA_RANGE_ALREADY_BLOCKED: 0x00000b0700000000n,
  TLB_TRACKING_NOT_DONE: 0xc0000b0800000000n,
  PAGE_ALREADY_ACCEPTED: 0x00000b0a00000000n,
  PAGE_SIZE_MISMATCH: 0xc0000b0b00000000n,
  EPT_ENTRY_STATE_INCORRECT: 0xc0000b0d00000000n,
  EPT_PAGE_NOT_FREE: 0xc0000b0e00000000n,
} as const;

/** Operand ids, §1.3. */
export const Operand = { RCX: 1, R8: 8, SEPT_TREE: 0x92 } as const;

/** Leaf numbers, §2.1 and §2.2. */
export const Leaf = {
  SEPT_ADD: 3,
  PAGE_AUG: 6,
  RANGE_BLOCK: 7,
  PAGE_DEMOTE: 15,
  SEPT_RD: 25,
  PAGE_REMOVE: 29,
  SEPT_REMOVE: 30,
  TRACK: 38,
  RANGE_UNBLOCK: 39,
  /** TDCALL */
  MEM_PAGE_ACCEPT: 6,
} as const;

/** The SEPT states that occur without migration (§3.2). */
export type State =
  | 'FREE'
  | 'NL_MAPPED'
  | 'NL_BLOCKED'
  | 'MAPPED'
  | 'BLOCKED'
  | 'PENDING'
  | 'PENDING_BLOCKED';

/** Public state number (§3.2), RWX carried in the entry, leaf or not. */
export const STATE_INFO: Readonly<Record<State, { publicNumber: number; rwx: number; leaf: boolean }>> = {
  FREE: { publicNumber: 0, rwx: 0, leaf: false },
  NL_MAPPED: { publicNumber: 0x84, rwx: 7, leaf: false },
  NL_BLOCKED: { publicNumber: 0x81, rwx: 0, leaf: false },
  MAPPED: { publicNumber: 4, rwx: 7, leaf: true },
  BLOCKED: { publicNumber: 1, rwx: 0, leaf: true },
  PENDING: { publicNumber: 2, rwx: 0, leaf: true },
  PENDING_BLOCKED: { publicNumber: 3, rwx: 0, leaf: true },
};

const ANY_BLOCKED: ReadonlySet<State> = new Set<State>(['NL_BLOCKED', 'BLOCKED', 'PENDING_BLOCKED']);
/** §3.2: guest-accessible leaves (of the states that occur here). */
const GUEST_ACCESSIBLE: ReadonlySet<State> = new Set<State>(['MAPPED']);
/** §3.2: every state except FREE (and REMOVED and two exported states, which never occur here). */
const needsTracking = (state: State): boolean => state !== 'FREE';

/** §3.3 allowed current states, restricted to the states that occur here. */
const ALLOWED: Readonly<Record<string, ReadonlySet<State>>> = {
  SEPT_ADD: new Set<State>(['FREE']),
  PAGE_AUG: new Set<State>(['FREE']),
  RANGE_BLOCK: new Set<State>(['NL_MAPPED', 'MAPPED', 'PENDING']),
  PAGE_DEMOTE: new Set<State>(['MAPPED', 'BLOCKED', 'PENDING', 'PENDING_BLOCKED']),
  PAGE_REMOVE: new Set<State>(['MAPPED', 'BLOCKED', 'PENDING', 'PENDING_BLOCKED']),
  SEPT_REMOVE: new Set<State>(['NL_MAPPED', 'NL_BLOCKED']),
  RANGE_UNBLOCK: new Set<State>(['NL_BLOCKED', 'BLOCKED', 'PENDING_BLOCKED']),
};

/** §5.5 and §5.7 transitions. */
const BLOCK_TO: Readonly<Partial<Record<State, State>>> = {
  NL_MAPPED: 'NL_BLOCKED',
  MAPPED: 'BLOCKED',
  PENDING: 'PENDING_BLOCKED',
};
const UNBLOCK_TO: Readonly<Partial<Record<State, State>>> = {
  NL_BLOCKED: 'NL_MAPPED',
  BLOCKED: 'MAPPED',
  PENDING_BLOCKED: 'PENDING',
};

/** Bytes covered by one entry at `level`. */
export function span(level: number): number {
  return 4096 * 512 ** level;
}

export function alignDown(gpa: number, level: number): number {
  return gpa - (gpa % span(level));
}

/** §4.1 RCX page-info layout. */
const RESERVED_MASK = 0xfff0_0000_0000_0ff8n;
const GPA_MASK = 0x000f_ffff_ffff_f000n;
/** GPAW 48: the shared bit is bit 47; bits 51:48 must be 0 as well. */
const PRIVATE_LIMIT = 2 ** 47;

export function pageInfo(gpa: number, level: number): bigint {
  return (BigInt(gpa) & GPA_MASK) | BigInt(level & 7);
}

/** §4.1 checks in order: reserved bits, level range, alignment, private GPA. */
export function checkPageInfo(
  rcx: bigint,
  min: number,
  max: number,
): { gpa: number; level: number } | undefined {
  if ((rcx & RESERVED_MASK) !== 0n) return undefined;
  const level = Number(rcx & 7n);
  if (level < min || level > max) return undefined;
  const gpa = Number(rcx & GPA_MASK);
  if (gpa % span(level) !== 0) return undefined;
  if (gpa >= PRIVATE_LIMIT) return undefined;
  return { gpa, level };
}

export interface Entry {
  readonly state: State;
  /** Leaf: the mapped HPA; non-leaf: the HPA of the child table page. */
  readonly hpa: number;
  /** TD epoch recorded by the last BLOCK (§5.5). */
  readonly bepoch: number;
}

const FREE_ENTRY: Entry = { state: 'FREE', hpa: 0, bepoch: 0 };

/** §4.3 details of an entry: the level and state the module reports in RDX (and RCX's view of the entry). */
export interface Details {
  readonly level: number;
  readonly state: State;
  readonly hpa: number;
}

/** What a host leaf answers. */
export interface HostExpectation {
  readonly status: bigint;
  /** §4.3 RCX/RDX details, for walk and state failures. */
  readonly details?: Details;
  /** RCX where the reference defines it on success (the HPA of a removed page). */
  readonly rcx?: bigint;
}

/** What TDG.MEM.PAGE.ACCEPT does: a status to the guest, or an EPT-violation TD exit (§5.11, §7.3). */
export type AcceptExpectation =
  | { readonly kind: 'status'; readonly status: bigint }
  | {
      readonly kind: 'exit';
      readonly requestedLevel: number;
      readonly errLevel: number;
      readonly errState: State;
    };

export interface Prediction<E> {
  readonly expected: E;
  /** Applies the predicted state change to the model (absent: nothing changes). */
  readonly commit?: () => void;
}

const invalid = (operand: number): Prediction<HostExpectation> => ({
  expected: { status: S.OPERAND_INVALID + BigInt(operand) },
});

/**
 * The R8 page of SEPT.ADD or AUG: a free (PT_NDA) page of the right size, the TD's own TDR page, or one of its
 * control pages (a TDVPR).
 */
export interface TargetPage {
  readonly hpa: number;
  readonly kind: 'free' | 'tdr' | 'control';
}

/**
 * §5.1 (HPA operands): alignment to the page size → OPERAND_INVALID; PAMT lock → OPERAND_BUSY; page type →
 * PAGE_METADATA_INCORRECT, all + R8. [derived] The TDR page's PAMT entry (and the 1G and 2M entries above it,
 * §9) is held shared by this very SEAMCALL (prologue P4), so the exclusive acquire of R8 = TDR finds a reader and
 * fails (§10.3) before the page type is looked at.
 */
function checkTargetPage(page: TargetPage, level: number): Prediction<HostExpectation> | undefined {
  if (page.kind === 'free') return undefined;
  if (page.hpa % span(level) !== 0) return invalid(Operand.R8);
  if (page.kind === 'tdr') return { expected: { status: S.OPERAND_BUSY + BigInt(Operand.R8) } };
  return { expected: { status: S.PAGE_METADATA_INCORRECT + BigInt(Operand.R8) } };
}

/**
 * The reference model: SEPT entries by (level, GPA) (absent = FREE), the TD epoch and the per-parity vCPU counts
 * (§8), and the one vCPU (in guest or not, and the epoch it entered in).
 */
export class ReferenceModel {
  readonly #entries = new Map<string, Entry>();
  epoch: number;
  readonly refcount: [number, number] = [0, 0];
  vcpuRunning = false;
  vcpuEpoch = 0;
  /** TD exits the VMM is expected to have seen. */
  exits = 0;
  constructor(initialEpoch: number) {
    this.epoch = initialEpoch;
  }

  entry(level: number, gpa: number): Entry {
    return this.#entries.get(`${level}:${alignDown(gpa, level)}`) ?? FREE_ENTRY;
  }

  #set(level: number, gpa: number, entry: Entry): void {
    const key = `${level}:${alignDown(gpa, level)}`;
    if (entry.state === 'FREE') this.#entries.delete(key);
    else this.#entries.set(key, entry);
  }

  /** §4.2: from PWL down; stops at the requested level, at an entry with RWX = 0, or at a leaf. */
  walk(gpa: number, level: number): Details {
    for (let l = PWL; ; l--) {
      const e = this.entry(l, gpa);
      const info = STATE_INFO[e.state];
      if (l === level || info.rwx === 0 || info.leaf) return { level: l, state: e.state, hpa: e.hpa };
    }
  }

  /** §8 "tracked" test of a recorded block epoch. */
  tracked(bepoch: number): boolean {
    if (bepoch < this.epoch - 1) return true;
    return bepoch === this.epoch - 1 && this.refcount[bepoch & 1] === 0;
  }

  /** G1-G4 and G6 of §5.1 for a leaf: page-info, walk to the level, allowed state. */
  #walkAndState(
    rcx: bigint,
    min: number,
    max: number,
    allowed: ReadonlySet<State> | undefined,
  ): { info: { gpa: number; level: number }; entry: Entry } | Prediction<HostExpectation> {
    const info = checkPageInfo(rcx, min, max);
    if (info === undefined) return invalid(Operand.RCX);
    const walk = this.walk(info.gpa, info.level);
    if (walk.level !== info.level) {
      return { expected: { status: S.EPT_WALK_FAILED + BigInt(Operand.RCX), details: walk } };
    }
    const entry = this.entry(info.level, info.gpa);
    if (allowed !== undefined && !allowed.has(entry.state)) {
      return { expected: { status: S.EPT_ENTRY_STATE_INCORRECT + BigInt(Operand.RCX), details: walk } };
    }
    return { info, entry };
  }

  /** §5.8 steps 8-9, §5.9 steps 8-9, §5.10: blocked and tracked while tracking is required (RUNNABLE). */
  #blockedAndTracked(entry: Entry, details: Details): Prediction<HostExpectation> | undefined {
    if (!needsTracking(entry.state)) return undefined;
    if (!ANY_BLOCKED.has(entry.state)) {
      return { expected: { status: S.GPA_RANGE_NOT_BLOCKED + BigInt(Operand.RCX), details } };
    }
    // The module reports no entry details here: RCX (and RDX) stay 0 (tdh_mem_page_remove.c and siblings).
    if (!this.tracked(entry.bepoch)) {
      return { expected: { status: S.TLB_TRACKING_NOT_DONE + BigInt(Operand.RCX), rcx: 0n } };
    }
    return undefined;
  }

  /** §5.2 TDH.MEM.SEPT.ADD. */
  septAdd(rcx: bigint, allowExisting: boolean, page: TargetPage): Prediction<HostExpectation> {
    const info = checkPageInfo(rcx, 1, PWL);
    if (info === undefined) return invalid(Operand.RCX);
    const walk = this.walk(info.gpa, info.level);
    if (walk.level !== info.level)
      return { expected: { status: S.EPT_WALK_FAILED + BigInt(Operand.RCX), details: walk } };
    if (walk.state === 'NL_MAPPED' && allowExisting) return { expected: { status: S.SUCCESS } };
    if (!ALLOWED.SEPT_ADD?.has(walk.state))
      return { expected: { status: S.EPT_ENTRY_STATE_INCORRECT + BigInt(Operand.RCX), details: walk } };
    const bad = checkTargetPage(page, 0);
    if (bad !== undefined) return bad;
    return {
      expected: { status: S.SUCCESS },
      commit: () => this.#set(info.level, info.gpa, { state: 'NL_MAPPED', hpa: page.hpa, bepoch: 0 }),
    };
  }

  /** §5.4 TDH.MEM.PAGE.AUG. */
  pageAug(rcx: bigint, page: TargetPage): Prediction<HostExpectation> {
    const r = this.#walkAndState(rcx, 0, 1, ALLOWED.PAGE_AUG);
    if ('expected' in r) return r;
    const { info } = r;
    const bad = checkTargetPage(page, info.level);
    if (bad !== undefined) return bad;
    return {
      expected: { status: S.SUCCESS },
      commit: () => this.#set(info.level, info.gpa, { state: 'PENDING', hpa: page.hpa, bepoch: 0 }),
    };
  }

  /** §5.5 TDH.MEM.RANGE.BLOCK. */
  rangeBlock(rcx: bigint): Prediction<HostExpectation> {
    const r = this.#walkAndState(rcx, 0, PWL, undefined);
    if ('expected' in r) return r;
    const { info, entry } = r;
    const details: Details = { level: info.level, state: entry.state, hpa: entry.hpa };
    if (ANY_BLOCKED.has(entry.state))
      return { expected: { status: S.GPA_RANGE_ALREADY_BLOCKED + BigInt(Operand.RCX), details } };
    const next = BLOCK_TO[entry.state];
    if (next === undefined)
      return { expected: { status: S.EPT_ENTRY_STATE_INCORRECT + BigInt(Operand.RCX), details } };
    return {
      expected: { status: S.SUCCESS },
      commit: () => this.#set(info.level, info.gpa, { state: next, hpa: entry.hpa, bepoch: this.epoch }),
    };
  }

  /** §5.7 TDH.MEM.RANGE.UNBLOCK (1.5.01: TLB_TRACKING_NOT_DONE + SEPT_TREE). */
  rangeUnblock(rcx: bigint): Prediction<HostExpectation> {
    const r = this.#walkAndState(rcx, 0, PWL, ALLOWED.RANGE_UNBLOCK);
    if ('expected' in r) return r;
    const { info, entry } = r;
    if (needsTracking(entry.state) && !this.tracked(entry.bepoch))
      return { expected: { status: S.TLB_TRACKING_NOT_DONE + BigInt(Operand.SEPT_TREE) } };
    const next = UNBLOCK_TO[entry.state] as State;
    return {
      expected: { status: S.SUCCESS },
      commit: () => this.#set(info.level, info.gpa, { state: next, hpa: entry.hpa, bepoch: entry.bepoch }),
    };
  }

  /** §5.6 TDH.MEM.TRACK. */
  track(): Prediction<HostExpectation> {
    if (this.refcount[1 - (this.epoch & 1)] !== 0) return { expected: { status: S.PREVIOUS_TLB_EPOCH_BUSY } };
    return {
      expected: { status: S.SUCCESS },
      commit: () => {
        this.epoch += 1;
      },
    };
  }

  /** §5.8 TDH.MEM.PAGE.REMOVE. */
  pageRemove(rcx: bigint): Prediction<HostExpectation> {
    const r = this.#walkAndState(rcx, 0, 2, ALLOWED.PAGE_REMOVE);
    if ('expected' in r) return r;
    const { info, entry } = r;
    const gate = this.#blockedAndTracked(entry, { level: info.level, state: entry.state, hpa: entry.hpa });
    if (gate !== undefined) return gate;
    return {
      expected: { status: S.SUCCESS, rcx: BigInt(entry.hpa) },
      commit: () => this.#set(info.level, info.gpa, FREE_ENTRY),
    };
  }

  /** §5.9 TDH.MEM.SEPT.REMOVE. */
  septRemove(rcx: bigint): Prediction<HostExpectation> {
    const r = this.#walkAndState(rcx, 1, PWL, ALLOWED.SEPT_REMOVE);
    if ('expected' in r) return r;
    const { info, entry } = r;
    const details: Details = { level: info.level, state: entry.state, hpa: entry.hpa };
    const gate = this.#blockedAndTracked(entry, details);
    if (gate !== undefined) return gate;
    if (this.#childrenNotFree(info.level, info.gpa))
      return { expected: { status: S.EPT_PAGE_NOT_FREE + BigInt(Operand.RCX), details } };
    return {
      expected: { status: S.SUCCESS, rcx: BigInt(entry.hpa) },
      commit: () => this.#set(info.level, info.gpa, FREE_ENTRY),
    };
  }

  #childrenNotFree(level: number, gpa: number): boolean {
    const base = alignDown(gpa, level);
    for (const [key, entry] of this.#entries) {
      const [l, g] = key.split(':').map(Number) as [number, number];
      if (l === level - 1 && g >= base && g < base + span(level) && entry.state !== 'FREE') return true;
    }
    return false;
  }

  /** §5.10 TDH.MEM.PAGE.DEMOTE: the leaf is unblocked and split into 512 children; the parent becomes NL_MAPPED. */
  pageDemote(rcx: bigint, page: number): Prediction<HostExpectation> {
    const r = this.#walkAndState(rcx, 1, 2, ALLOWED.PAGE_DEMOTE);
    if ('expected' in r) return r;
    const { info, entry } = r;
    const gate = this.#blockedAndTracked(entry, { level: info.level, state: entry.state, hpa: entry.hpa });
    if (gate !== undefined) return gate;
    const childState = UNBLOCK_TO[entry.state] ?? entry.state;
    return {
      expected: { status: S.SUCCESS },
      commit: () => {
        const childLevel = info.level - 1;
        for (let i = 0; i < 512; i++) {
          const offset = i * span(childLevel);
          this.#set(childLevel, info.gpa + offset, { state: childState, hpa: entry.hpa + offset, bepoch: 0 });
        }
        this.#set(info.level, info.gpa, { state: 'NL_MAPPED', hpa: page, bepoch: 0 });
      },
    };
  }

  /** §5.11 and §6 TDG.MEM.PAGE.ACCEPT (no interrupt pending, no lock ever held). */
  accept(rcx: bigint): Prediction<AcceptExpectation> {
    const info = checkPageInfo(rcx, 0, 1);
    if (info === undefined)
      return { expected: { kind: 'status', status: S.OPERAND_INVALID + BigInt(Operand.RCX) } };
    const walk = this.walk(info.gpa, info.level);
    const exit: AcceptExpectation = {
      kind: 'exit',
      requestedLevel: info.level,
      errLevel: walk.level,
      errState: walk.state,
    };
    if (walk.level !== info.level) {
      if (STATE_INFO[walk.state].leaf && GUEST_ACCESSIBLE.has(walk.state))
        return { expected: { kind: 'status', status: S.PAGE_ALREADY_ACCEPTED + BigInt(walk.level) } };
      return { expected: exit };
    }
    const entry = this.entry(info.level, info.gpa);
    if (!STATE_INFO[entry.state].leaf && entry.state !== 'FREE')
      return { expected: { kind: 'status', status: S.PAGE_SIZE_MISMATCH + BigInt(info.level) } };
    if (GUEST_ACCESSIBLE.has(entry.state))
      return { expected: { kind: 'status', status: S.PAGE_ALREADY_ACCEPTED + BigInt(info.level) } };
    if (entry.state !== 'PENDING') return { expected: exit };
    return {
      expected: { kind: 'status', status: S.SUCCESS },
      commit: () =>
        this.#set(info.level, info.gpa, { state: 'MAPPED', hpa: entry.hpa, bepoch: entry.bepoch }),
    };
  }

  /** §8: a TD exit drops the vCPU's reference to the epoch it entered in. */
  vcpuExit(): void {
    if (!this.vcpuRunning) return;
    const slot = (this.vcpuEpoch & 1) as 0 | 1;
    this.refcount[slot] -= 1;
    this.vcpuRunning = false;
    this.exits += 1;
  }

  /** §8: TDH.VP.ENTER takes a reference to the current epoch and records it in the vCPU. */
  vcpuEnter(): void {
    if (this.vcpuRunning) return;
    const slot = (this.epoch & 1) as 0 | 1;
    this.refcount[slot] += 1;
    this.vcpuEpoch = this.epoch;
    this.vcpuRunning = true;
  }
}
