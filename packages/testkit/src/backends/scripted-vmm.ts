import {
  type BuildTdOptions,
  type BuiltTd,
  buildTd,
  type Gprs,
  makeGprs,
  mapGpaRequestError,
  Reg,
  SeededRng,
  sharedBit,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TdxModule,
  VmExitReason,
  type Vmm,
} from '@tdxsim/tdx-module';
import { acknowledgedPagesOf } from '../behaviour/acknowledged-pages.js';
import { parseBehaviour } from '../behaviour/parse-behaviour.js';
import { resolveParsedStep } from '../behaviour/resolve-step.js';
import type { MapGpaStep, VmmBehaviour } from '../behaviour/vmm-behaviour.js';
import { testkitLogger } from '../log.js';
import {
  assertBuiltTd,
  assertIntegerOption,
  assertMethods,
  assertOptions,
  MODULE_METHODS,
} from '../validation.js';
import { HonestCore, trustedHonestCore } from './honest-core.js';

const log = testkitLogger('scripted');
const PAGE = 4096;
/** RAX of a TDH.VP.ENTER that failed (bit 63, an error status) and every value above it. */
const FAILED_ENTRY = 1n << 63n;
/** Below this a register converts to a number exactly. */
const EXACT_NUMBER = 2n ** 53n;

/** What a change noted for {@link ScriptedVmm.record} does (see `#unmade`). */
const UNBACKED_ACKS = 0;
const BEHIND = 1;
const FORGET_ACKS = 2;

/** True while {@link trustedScriptedVmm} constructs: its arguments are not checked. */
let trusted = false;

/** Options of {@link ScriptedVmm}: a cap on the pages one MapGPA call converts. */
export interface ScriptedVmmOptions {
  /** The most pages one MapGPA call converts, whatever the script says (default 2^18, 1 GiB): keeps scripts cheap. */
  readonly maxPagesPerCall?: number;
}

/** Checks {@link ScriptedVmmOptions}. */
export function checkScriptedOptions(options: unknown): void {
  assertOptions('ScriptedVmm', 'options', options, ['maxPagesPerCall']);
  assertIntegerOption(
    'maxPagesPerCall',
    (options as ScriptedVmmOptions | undefined)?.maxPagesPerCall,
    1,
    2 ** 30,
  );
}

/** What a scripted backend did that the guest cannot see: what a property must not hold against the guest. */
export interface ScriptedVmmRecord {
  /** MapGPA calls answered. */
  mapGpaCalls: number;
  /** Frames (private GPA / 4096) a reply acknowledged as converted that the VMM did not convert. */
  readonly unbackedAcks: Set<number>;
  /** Frames changed behind the guest's back: converted outside the request, or removed and re-added. */
  readonly behindTheGuestsBack: Set<number>;
}

/**
 * A VMM backend driven by a {@link VmmBehaviour} script: an honest core ({@link HonestCore}: lazy AUG at the level
 * asked, BLOCK → TRACK → REMOVE then a shared mapping for to-shared, unmapping for to-private) whose MapGPA replies
 * and conversions follow the script step by step. Requests a real VMM must refuse are refused as KVM does
 * (INVALID_OPERAND, then ALIGN_ERROR, R11 = R12; reference guest-and-vmm.md §3.1). Other TDVMCALLs get
 * SUBFUNC_UNSUPPORTED.
 */
export class ScriptedVmm implements Vmm {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly behaviour: VmmBehaviour;
  readonly core: HonestCore;
  readonly #record: ScriptedVmmRecord = {
    mapGpaCalls: 0,
    unbackedAcks: new Set(),
    behindTheGuestsBack: new Set(),
  };
  /**
   * The changes to the record's sets not made yet, four numbers each (what, frame, from, to), while nobody has read
   * {@link record}: a reply acknowledging 1 GiB it did not convert is 262,144 frames, and a run that never reads them
   * (the CLI's matrix judges by the guest and the module) should not pay for them. Undefined once read: the sets are
   * then made as they were and kept up to date call by call. Bound while unread: a MapGPA call notes at most three
   * changes (forget, behind, acknowledged: 12 numbers) whatever its size, plus one per frame of a page that
   * `tamper-accepted` replaced (512 for a 2M page); a malformed request notes none.
   */
  #unmade: number[] | undefined = [];
  /** Whether an acknowledgement without backing may have been noted (in {@link #unmade}). */
  #mayHaveUnbackedAcks = false;
  readonly #maxPages: number;
  readonly #rng: SeededRng;
  #stepsTaken = 0;

  /** Wraps a TD already built (e.g. with `buildTd`); `behaviour` is checked first. */
  constructor(module: TdxModule, td: BuiltTd, behaviour: VmmBehaviour, options: ScriptedVmmOptions = {}) {
    const checked = !trusted;
    if (checked) {
      assertMethods('module', module, 'a TdxModule', MODULE_METHODS);
      assertBuiltTd('td', td);
      checkScriptedOptions(options);
    }
    this.module = module;
    this.td = td;
    this.behaviour = checked ? parseBehaviour(behaviour) : behaviour;
    this.core = checked ? new HonestCore(module, td) : trustedHonestCore(module, td);
    this.#maxPages = options.maxPagesPerCall ?? 2 ** 18;
    this.#rng = new SeededRng(this.behaviour.seed ?? 1);
  }

  /**
   * What the backend did that the guest cannot see, so far. The sets are made at the first read (the same frames, in
   * the same order, as if made at each call) and kept up to date from then on.
   */
  get record(): ScriptedVmmRecord {
    const unmade = this.#unmade;
    if (unmade !== undefined) {
      this.#unmade = undefined;
      for (let at = 0; at < unmade.length; at += 4)
        this.#make(
          unmade[at] as number,
          unmade[at + 1] as number,
          unmade[at + 2] as number,
          unmade[at + 3] as number,
        );
    }
    return this.#record;
  }

  /** Builds a TD through SEAMCALLs and returns the backend for it. */
  static async create(
    module: TdxModule,
    behaviour: VmmBehaviour,
    build: BuildTdOptions = {},
    options: ScriptedVmmOptions = {},
  ): Promise<ScriptedVmm> {
    // Everything the constructor checks, before buildTd's first SEAMCALL.
    assertMethods('module', module, 'a TdxModule', MODULE_METHODS);
    parseBehaviour(behaviour);
    checkScriptedOptions(options);
    return new ScriptedVmm(module, await buildTd(module, build), behaviour, options);
  }

  /** Starts the vCPUs' host threads. */
  run(): Promise<void>[] {
    return this.td.run(this);
  }

  /**
   * Answers a TD exit: each MapGPA with the next step of the behaviour script (and its side effects), EPT violations
   * honestly (lazy AUG), other TDVMCALLs with SUBFUNC_UNSUPPORTED.
   */
  async onTdExit(exit: TdExitEvent): Promise<Gprs> {
    const rax = exit.regs[Reg.RAX] as bigint;
    // Bit 63 by comparison (RAX is 64-bit): a shift makes a BigInt per exit.
    if (rax >= FAILED_ENTRY) {
      // A failed TDH.VP.ENTER (BUSY): enter again on a later turn, as KVM and Hyper-V do.
      await new Promise((resolve) => setImmediate(resolve));
      return makeGprs();
    }
    // Bits 15:0, from a number where RAX fits one exactly (every exit the module makes): no BigInt per exit.
    const reason = rax < EXACT_NUMBER ? Number(rax) % 0x10000 : Number(rax & 0xffffn);
    if (reason === VmExitReason.EPT_VIOLATION) await this.core.onEptViolation(exit.regs);
    if (reason !== VmExitReason.TDCALL) return makeGprs();
    const regs = exit.regs;
    if (regs[Reg.R10] !== 0n || regs[Reg.R11] !== TdvmcallSubfunction.MAP_GPA)
      return makeGprs({ r10: TdvmcallStatus.SUBFUNC_UNSUPPORTED });
    return this.#mapGpa(regs[Reg.R12] as bigint, regs[Reg.R13] as bigint);
  }

  #step(): MapGpaStep {
    const { steps, order } = this.behaviour;
    this.#record.mapGpaCalls++;
    const index = this.#stepsTaken++;
    const at =
      order === 'seeded'
        ? this.#rng.int(0, steps.length - 1)
        : order === 'cycle'
          ? index % steps.length
          : Math.min(index, steps.length - 1);
    return steps[at] as MapGpaStep;
  }

  /**
   * The `pages` frames from `frame` were converted: no longer acknowledged without backing (through the set when it is
   * the smaller). Only after a reply that lied: a method of its own, so that a case reaching it first does not
   * deoptimise {@link #mapGpa}.
   */
  #forgetUnbackedAcks(frame: number, pages: number): void {
    const { unbackedAcks } = this.#record;
    if (unbackedAcks.size < pages) {
      for (const acked of unbackedAcks)
        if (acked >= frame && acked < frame + pages) unbackedAcks.delete(acked);
    } else {
      for (let i = 0; i < pages; i++) unbackedAcks.delete(frame + i);
    }
  }

  /** A change to the record's sets: made now once {@link record} has been read, else noted for that read. */
  #note(what: number, frame: number, from: number, to: number): void {
    if (from >= to) return;
    const unmade = this.#unmade;
    if (unmade === undefined) this.#make(what, frame, from, to);
    else unmade.push(what, frame, from, to);
  }

  /**
   * Frames `frame + i` for `i` from `from` while below `to` (fractions as they come) acknowledged or changed; or
   * forgotten.
   */
  #make(what: number, frame: number, from: number, to: number): void {
    if (what === FORGET_ACKS) {
      this.#forgetUnbackedAcks(frame, to);
      return;
    }
    const set = what === UNBACKED_ACKS ? this.#record.unbackedAcks : this.#record.behindTheGuestsBack;
    for (let i = from; i < to; i++) set.add(frame + i);
  }

  async #mapGpa(r12: bigint, r13: bigint): Promise<Gprs> {
    const gpaw = this.td.gpaw;
    const shared = BigInt(sharedBit(gpaw));
    // KVM's checks; R11 = R12 on every error.
    const error = mapGpaRequestError(r12, r13, gpaw);
    if (error !== undefined) {
      this.#record.mapGpaCalls++;
      return makeGprs({ r10: error, r11: r12 });
    }
    const toShared = (r12 & shared) !== 0n;
    const gpa = Number(r12 & ~shared);
    // The step is the parsed behaviour's, the request well formed (checked just above): resolved without checks.
    const step = resolveParsedStep(this.#step(), { r12, r13, sharedBit: shared }, this.#maxPages);
    // Never past the private GPA space: a frame there has no private alias.
    const pages = Math.min(step.convertPages, (Number(shared) - gpa) / PAGE);
    // A step has at most a few side effects (most none): looked up in its array, no set made per call.
    const effects = step.effects;
    const keepPrivate = toShared && effects.includes('keep-private');
    if (toShared) await this.core.toShared(gpa, pages, keepPrivate);
    else this.core.toPrivate(gpa, pages);
    const frame = gpa / PAGE;
    const asked = Number(r13) / PAGE;
    const unmade = this.#unmade;
    if (
      !keepPrivate &&
      (unmade === undefined ? this.#record.unbackedAcks.size > 0 : this.#mayHaveUnbackedAcks)
    )
      this.#note(FORGET_ACKS, frame, 0, pages);
    this.#note(BEHIND, frame, Math.max(0, Math.ceil(asked)), pages);
    if (effects.includes('tamper-accepted')) {
      for (const touched of await this.core.tamperAccepted(gpa, gpa + asked * PAGE))
        this.#note(BEHIND, touched, 0, 1);
    }
    if (toShared && effects.includes('alias-shared-pair') && pages >= 2)
      this.core.aliasSharedPair(gpa, gpa + PAGE);
    if (toShared && effects.includes('map-td-page') && pages >= 1) this.core.mapTdPage(gpa);
    // The request was checked above and the reply resolved from it (64-bit by construction): not checked again.
    const acknowledged = acknowledgedPagesOf(r12, r13, step.r10, step.r11, shared);
    const done = keepPrivate ? 0 : Math.min(pages, asked);
    if (done < acknowledged) {
      this.#mayHaveUnbackedAcks = true;
      this.#note(UNBACKED_ACKS, frame, done, acknowledged);
    }
    // The hex strings are made only when the namespace is enabled: a campaign answers a MapGPA or more per case.
    if (log.enabled)
      log(
        'MapGPA r12=0x%s r13=0x%s: converted %d, r10=0x%s r11=0x%s',
        r12.toString(16),
        r13.toString(16),
        pages,
        step.r10.toString(16),
        step.r11.toString(16),
      );
    // Set in place: both are 64-bit (the resolved step's), so makeGprs's look-up by name would change nothing.
    const reply = makeGprs();
    reply[Reg.R10] = step.r10;
    reply[Reg.R11] = step.r11;
    return reply;
  }
}

/**
 * The backend of a safety case: a module and TD the caller made itself (restored from a checkpoint) and a behaviour
 * already parsed ({@link parseBehaviour}'s result) or generated by the behaviour arbitraries (valid and in parsed form
 * by construction), so nothing is checked or copied again: the checks cost a fuzz case more than some of its
 * SEAMCALLs. Default options. Not in the package's API: a user's module, TD and behaviour are always checked.
 */
export function trustedScriptedVmm(module: TdxModule, td: BuiltTd, behaviour: VmmBehaviour): ScriptedVmm {
  trusted = true;
  try {
    return new ScriptedVmm(module, td, behaviour);
  } finally {
    trusted = false;
  }
}
