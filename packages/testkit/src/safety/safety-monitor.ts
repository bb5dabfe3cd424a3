import {
  type ConversionResult,
  checkLedger,
  type GpaRange,
  type GuestAccess,
  type GuestUnderTest,
  type PageState,
} from '@tdxsim/guest';
import {
  checkInvariants,
  checkVmmView,
  type TdxModule,
  VMM_OWNED_INVARIANT_RULES,
  type Vmm,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { objectArray } from '../object-array.js';
import {
  assertIntegerOption,
  assertMethods,
  assertOptions,
  assertPageAddress,
  assertVmm,
} from '../validation.js';
import { checkConversionArguments } from './conversion-arguments.js';

const log = createDebug('tdxsim:testkit:safety');

/**
 * A broken guest-safety property:
 * - `module-invariant`: the module's own state (SEPT, PAMT, locks) is inconsistent;
 * - `overclaim-private`: the guest reported a page converted to private that is not a usable private page;
 * - `overclaim-shared`: the guest reported a page converted to shared that no VMM reply acknowledged (checked when
 *   the caller passes the acknowledgements);
 * - `quarantine-left`: a page the guest quarantined came back into use;
 * - `plaintext-exposed`: the host read a secret the guest kept in private memory;
 * - `integrity`: the guest read back different data from a private page without noticing;
 * - `did-not-terminate`: the guest would loop forever (it hit the simulator's fuse);
 * - `backend-view`: the backend's own view of what it mapped (`Vmm.view`) diverges from the module's Secure-EPT or
 *   shared EPT (checked when the monitor is given the backend; meant for quiescence);
 * - `ledger`: the guest's ledger contradicts the module's truth (checked by {@link SafetyMonitor.checkLedger}, at
 *   quiescence, against a VMM trusted not to change pages behind the guest's back).
 */
export type SafetyRule =
  | 'module-invariant'
  | 'overclaim-private'
  | 'overclaim-shared'
  | 'quarantine-left'
  | 'plaintext-exposed'
  | 'integrity'
  | 'did-not-terminate'
  | 'backend-view'
  | 'ledger';

/** One broken safety property of the guest: the rule and what was seen. */
export interface SafetyViolation {
  readonly rule: SafetyRule;
  readonly message: string;
  /** The first guest page the violation concerns, when it concerns one (reports mark it). */
  readonly gpa?: number;
}

/**
 * VMM misbehaviour the monitor saw that does not make the guest unsafe:
 * - `vmm-shared-ept`: the VMM broke a rule of its own shared EPT (a VMM-owned invariant);
 * - `unverifiable-shared`: the VMM acknowledged a private → shared conversion it did not perform (no guest can see
 *   the shared EPT, and nothing is exposed: the page stays private);
 * - `tamper-detected`: the guest found a private page replaced behind its back and quarantined it.
 */
export interface SafetyNote {
  readonly rule: 'vmm-shared-ept' | 'unverifiable-shared' | 'tamper-detected';
  readonly message: string;
}

/** What the caller saw of a conversion's calls (see {@link SafetyMonitor.afterConversion}). */
export interface ConversionEvidence {
  readonly acknowledged: readonly GpaRange[];
  readonly removed: readonly GpaRange[];
  /** Pages already in the target state before the conversion: the result reports them converted, but claims nothing. */
  readonly alreadyInTarget?: readonly GpaRange[];
}

/** What a {@link SafetyMonitor} watches: the module (its truth), the TD and the guest. */
export interface SafetyMonitorOptions {
  readonly module: TdxModule;
  readonly tdr: number;
  /** The guest watched: a `TdGuest`, or any guest with a ledger and guest memory access (e.g. a wasm guest). */
  readonly guest: Pick<GuestUnderTest, 'ledger' | 'read' | 'write'>;
  /** Most secrets kept planted in private pages at once (each costs a guest write and, per check, a read). Default 64. */
  readonly maxSecrets?: number;
  /** The backend: when it exposes a view of what it mapped, {@link SafetyMonitor.check} holds it against the truth. */
  readonly vmm?: Vmm;
}

interface Secret {
  readonly gpa: number;
  readonly bytes: Uint8Array;
}

const SECRET_LENGTH = 32;
/** The bytes of a secret's label before its number (ASCII: its UTF-8 bytes). */
const SECRET_PREFIX = Uint8Array.from('tdxsim secret #', (c) => c.charCodeAt(0));
/** What {@link SafetyMonitor}'s secret planting answers when it plants nothing (awaited as its async version's was). */
const NOTHING_PLANTED: Promise<void> = Promise.resolve();
const PAGE = 4096;

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Set while {@link trustedSafetyMonitor} constructs (its options are not checked): whether that monitor judges
 * to-private claims.
 */
let trusted: { readonly judgesPrivateClaims: boolean } | undefined;

/** {@link SafetyMonitorOptions}, checked before a monitor is made of them. */
function checkMonitorOptions(options: SafetyMonitorOptions): void {
  assertOptions('SafetyMonitor', 'options', options, ['module', 'tdr', 'guest', 'maxSecrets', 'vmm'], false);
  assertMethods('module', options.module, 'a TdxModule', ['privatePage', 'hostRead']);
  assertPageAddress('tdr', options.tdr);
  assertMethods('guest', options.guest, 'a TdGuest (or an object with ledger, read and write)', [
    'read',
    'write',
  ]);
  assertMethods('guest.ledger', options.guest.ledger, 'a ledger', ['stateOf', 'runs', 'entries']);
  assertIntegerOption('maxSecrets', options.maxSecrets, 0);
  if (options.vmm !== undefined) assertVmm('vmm', options.vmm);
}

/**
 * Watches one guest for the safety properties a guest must keep against any VMM, honest or hostile. Call
 * {@link afterConversion} after every conversion and {@link check} after every step; violations and notes accumulate.
 * It plants secrets in pages the guest converted to private, and later checks that the host cannot read them and that
 * the guest either reads them back intact or notices that the page was replaced.
 */
export class SafetyMonitor {
  readonly violations: SafetyViolation[] = objectArray();
  readonly notes: SafetyNote[] = objectArray();
  readonly #module: TdxModule;
  readonly #tdr: number;
  readonly #guest: Pick<GuestUnderTest, 'ledger' | 'read' | 'write'>;
  readonly #maxSecrets: number;
  readonly #vmm: Vmm | undefined;
  readonly #secrets: Secret[] = objectArray();
  /** Quarantined runs seen so far: quarantine is for ever. */
  #quarantined: GpaRange[] = objectArray();
  #secretCounter = 0;
  /** Whether {@link afterConversion} checks its arguments: not for a safety case's own monitor (see {@link trustedSafetyMonitor}). */
  readonly #checksArguments: boolean;
  /**
   * Whether {@link afterConversion} holds a to-private claim against the module's private side: not for the monitor of
   * a safety case with a scripted VMM (see {@link trustedSafetyMonitor}).
   */
  readonly #judgesPrivateClaims: boolean;

  constructor(options: SafetyMonitorOptions) {
    this.#checksArguments = trusted === undefined;
    this.#judgesPrivateClaims = trusted?.judgesPrivateClaims ?? true;
    if (trusted === undefined) checkMonitorOptions(options);
    this.#module = options.module;
    this.#tdr = options.tdr;
    this.#guest = options.guest;
    this.#maxSecrets = options.maxSecrets ?? 64;
    this.#vmm = options.vmm;
  }

  /** True while no violation has been seen. */
  get safe(): boolean {
    return this.violations.length === 0;
  }

  #violate(rule: SafetyRule, message: string, gpa?: number): void {
    log('violation %s: %s', rule, message);
    this.violations.push(gpa === undefined ? { rule, message } : { rule, message, gpa });
  }

  #note(rule: SafetyNote['rule'], message: string): void {
    if (this.notes.some((n) => n.rule === rule && n.message === message)) return;
    this.notes.push({ rule, message });
  }

  /**
   * Holds what a conversion of `range` reported against the module's truth, and plants a secret in the first page it
   * converted to private. `evidence`, when the caller watched the conversion's calls (e.g. through the trace):
   * - `acknowledged`: the ranges the VMM's MapGPA replies acknowledged (SUCCESS: the request; RETRY: up to R11 when
   *   R11 lies in it). A page the guest reports converted to shared that no reply acknowledged is then a violation,
   *   whatever its state: only a guest that ignores the VMM's answer makes that claim. Without evidence, to-shared
   *   claims are held against the private side only, and a page still private is a note.
   * - `removed`: private pages the VMM removed during the conversion. A to-private conversion never needs that, so a
   *   page removed then is the VMM's tampering, which the guest must catch on its next access (the `integrity` and
   *   `tamper-detected` checks), not an over-claim of the conversion.
   */
  async afterConversion(
    range: GpaRange,
    toShared: boolean,
    result: ConversionResult,
    evidence?: ConversionEvidence,
  ): Promise<void> {
    if (this.#checksArguments) checkConversionArguments(range, toShared, result, evidence);
    if (toShared) {
      // The guest gave these pages up (or tried to): what it kept in them is no longer its secret.
      for (let i = this.#secrets.length - 1; i >= 0; i--) {
        const gpa = (this.#secrets[i] as Secret).gpa;
        if (gpa >= range.start && gpa < range.end) this.#secrets.splice(i, 1);
      }
    }
    if (result.kind === 'failed') {
      const failure = result.failure;
      if (failure.step === 'map-gpa' && failure.failure.kind === 'would-not-terminate') {
        this.#violate(
          'did-not-terminate',
          `MapGPA over ${hex(range.start)}..${hex(range.end)} made ${failure.failure.calls} calls without ending`,
          range.start,
        );
      }
      if (failure.step === 'accept' && failure.failure.reason === 'fuse') {
        this.#violate(
          'did-not-terminate',
          `accept at ${hex(failure.failure.acceptedEnd)} retried without end`,
          failure.failure.acceptedEnd,
        );
      }
    }
    // Lists built in their final elements kind (see objectArray): the same hidden class whatever the case.
    const reported = objectArray<GpaRange>();
    if (result.kind === 'ok') reported.push(range);
    else {
      for (const run of result.pages)
        if (run.outcome === 'converted') reported.push({ start: run.start, end: run.end });
    }
    const converted = subtract(reported, evidence?.alreadyInTarget ?? []);
    if (toShared && evidence !== undefined) {
      for (const run of converted) {
        const unacknowledged = firstUncovered(run.start, run.end, evidence.acknowledged);
        if (unacknowledged === undefined) continue;
        this.#violate(
          'overclaim-shared',
          `the guest reported ${hex(unacknowledged)} converted to shared but no VMM reply acknowledged it`,
          unacknowledged,
        );
        break;
      }
    }
    if (toShared || this.#judgesPrivateClaims) {
      for (const run of converted) {
        for (const wrong of this.#privateMismatches(run, toShared))
          if (this.#judgeMismatch(wrong, toShared, evidence)) break;
      }
    }
    // Read past the end of an empty list, element 0 deoptimised this (`out of bounds`) the first time a case claimed
    // nothing converted, and it was compiled again, in a process's first or second campaign.
    if (!toShared && converted.length > 0) {
      const first = converted[0] as GpaRange;
      if (first.end > first.start) await this.#plant(first.start);
    }
  }

  /**
   * Judges one span whose private side disagrees with the conversion's direction: true once its run is judged (one
   * finding per run), false to look at the run's next span. A method of its own so that a rare case reaching a branch
   * for the first time recompiles this, not all of afterConversion.
   */
  #judgeMismatch(
    wrong: { start: number; end: number; state: string },
    toShared: boolean,
    evidence: ConversionEvidence | undefined,
  ): boolean {
    if (!toShared) {
      const excused = firstUncovered(wrong.start, wrong.end, evidence?.removed ?? []);
      if (excused === undefined) return false;
      this.#violate(
        'overclaim-private',
        `the guest reported ${hex(excused)} converted to private but the module holds it ${wrong.state}`,
        excused,
      );
      return true;
    }
    // One note per run: a VMM that lies about a GiB would otherwise leave a note per page.
    this.#note(
      'unverifiable-shared',
      `the VMM acknowledged ${hex(wrong.start)} as shared but the page is still private (${wrong.state})`,
    );
    return true;
  }

  /** The spans of `run` whose private side disagrees with the conversion's direction. */
  *#privateMismatches(
    run: GpaRange,
    toShared: boolean,
  ): Generator<{ start: number; end: number; state: string }> {
    // A run of pages at once (the module reads its S-EPT table's entries): no walk and no object per 4K page.
    for (let gpa = run.start; gpa < run.end; ) {
      const truth = this.#module.privateRun(this.#tdr, gpa, run.end);
      if ((truth.state === 'MAPPED') === toShared) yield { start: gpa, end: truth.end, state: truth.state };
      gpa = truth.end;
    }
  }

  /**
   * Plants a secret in `gpa` if the guest holds it private and accepted: the guest writes it, and it is kept once the
   * write went through. Not itself async: what follows the write is {@link #keep}'s, so the write's answer is read there.
   * This function has the guest's write inlined when optimised, and read here, a failed write (an answer of another
   * hidden class, first seen in a process's second campaign) threw that code away (`wrong map`) and had it compiled
   * again in the next. The same promise turns: a resolved promise when nothing is planted, as the async version was,
   * and a rejected one when a guest's `stateOf` or `write` throws instead of rejecting (a user's guest may).
   */
  #plant(gpa: number): Promise<void> {
    try {
      if (this.#guest.ledger.stateOf(gpa) !== 'private-accepted') return NOTHING_PLANTED;
      const bytes = new Uint8Array(SECRET_LENGTH);
      // The label `tdxsim secret #<n>` written straight into the secret (cut at its length), a byte per character: it
      // is ASCII, so these are its UTF-8 bytes. The prefix is copied and the number's digits read from a string of
      // their own: read character by character, the joined label (a string made of two, never flattened) cost a call
      // into the runtime per character, 0.4 % of a fuzz campaign.
      bytes.set(SECRET_PREFIX);
      const digits = String(++this.#secretCounter);
      for (let i = 0; i < digits.length && SECRET_PREFIX.length + i < SECRET_LENGTH; i++)
        bytes[SECRET_PREFIX.length + i] = digits.charCodeAt(i);
      return this.#keep(gpa, bytes, this.#guest.write(gpa, bytes));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Keeps the secret {@link #plant} is writing once the write went through (the oldest dropped past the limit). */
  async #keep(gpa: number, bytes: Uint8Array, writing: Promise<GuestAccess>): Promise<void> {
    const written = await writing;
    if (written.kind !== 'ok') return;
    const existing = this.#secrets.findIndex((s) => s.gpa === gpa);
    if (existing >= 0) this.#secrets.splice(existing, 1);
    this.#secrets.push({ gpa, bytes });
    if (this.#secrets.length > this.#maxSecrets) this.#secrets.shift();
  }

  /**
   * Runs every check now: invariants, the backend's view, quarantine, secrets. Returns the violations found by this
   * call. It does not hold the guest's ledger against the module's truth (a VMM may change pages behind a guest's
   * back; the guest then learns of it at its next access, and `integrity` / `tamper-detected` judge that): a guest
   * whose ledger is simply wrong is caught by {@link afterConversion} with evidence (`overclaim-*`), or by
   * `checkLedger` from `@tdxsim/guest` (what `exploreSchedules` runs at quiescence). `check()` alone can say safe for
   * a guest whose ledger contradicts the module.
   */
  async check(): Promise<SafetyViolation[]> {
    const before = this.violations.length;
    for (const violation of checkInvariants(this.#module)) {
      if (VMM_OWNED_INVARIANT_RULES.has(violation.rule)) this.#note('vmm-shared-ept', violation.message);
      else this.#violate('module-invariant', `${violation.rule}: ${violation.message}`);
    }
    this.#checkView();
    this.#checkQuarantine();
    await this.#checkSecrets();
    return this.violations.slice(before);
  }

  /**
   * The quarantine rule alone: no page quarantined at an earlier check (of either kind) has left quarantine. It reads
   * only the guest's ledger, so a caller that samples {@link check} (a fuzz case checks the module once, at its end)
   * can still run this after every step: what quarantine must keep is then judged step by step. Returns the
   * violations found by this call.
   */
  checkQuarantine(): SafetyViolation[] {
    const before = this.violations.length;
    this.#checkQuarantine();
    return this.violations.slice(before);
  }

  /**
   * Holds the guest's ledger against the module's truth (`checkLedger` of `@tdxsim/guest`), a `ledger` violation for
   * the first few mismatches. Meant for quiescence (no conversion in flight) and for honest VMMs: a hostile one may
   * change pages behind the guest's back, which the guest learns of only at its next access. Returns the violations
   * found by this call.
   */
  checkLedger(): SafetyViolation[] {
    const before = this.violations.length;
    const ledger = this.#guest.ledger as GuestUnderTest['ledger'];
    for (const m of checkLedger(ledger, this.#module, this.#tdr).slice(0, 4))
      this.#violate(
        'ledger',
        `${hex(m.start)}..${hex(m.end)} is ${m.ledger} in the guest's ledger but ${m.module} (level ${m.level}) in the module`,
        m.start,
      );
    return this.violations.slice(before);
  }

  /** The backend's view against the module's truth: no real VMM can read the Secure-EPT, so a belief can drift. */
  #checkView(): void {
    if (typeof this.#vmm?.view !== 'function') return;
    let view: ReturnType<NonNullable<Vmm['view']>>;
    try {
      view = this.#vmm.view();
    } catch (error) {
      this.#violate(
        'backend-view',
        `the backend's view could not be read: ${error instanceof Error ? error.message : String(error)}`,
      );
      return;
    }
    if (view === undefined) return;
    for (const mismatch of checkVmmView(this.#module, this.#tdr, view, { limit: 8 }))
      this.#violate('backend-view', mismatch.message);
  }

  #checkQuarantine(): void {
    const ledger = this.#guest.ledger;
    for (const run of this.#quarantined) {
      for (const now of ledger.runs(run)) {
        if (now.state !== 'quarantined') {
          this.#violate(
            'quarantine-left',
            `${hex(now.start)}..${hex(now.end)} was quarantined and is now ${now.state ?? 'outside RAM'}`,
            now.start,
          );
        }
      }
    }
    const quarantined = objectArray<GpaRange>();
    const keep = (start: number, end: number, state: PageState): void => {
      if (state === 'quarantined') quarantined.push({ start, end });
    };
    // forEachRun where the ledger has it (a PageLedger: no object per run); a ledger given with only what the
    // constructor asks for (stateOf, runs, entries) is read through entries.
    if (typeof ledger.forEachRun === 'function') ledger.forEachRun(keep);
    else for (const run of ledger.entries()) keep(run.start, run.end, run.state);
    this.#quarantined = quarantined;
  }

  async #checkSecrets(): Promise<void> {
    for (let i = this.#secrets.length - 1; i >= 0; i--) {
      const secret = this.#secrets[i] as Secret;
      const state = this.#guest.ledger.stateOf(secret.gpa);
      if (state !== 'private-accepted') {
        // The guest gave the page up (to shared) or quarantined it: the secret is no longer its to keep.
        this.#secrets.splice(i, 1);
        continue;
      }
      const truth = this.#module.privatePage(this.#tdr, secret.gpa);
      if (truth.hpa !== undefined) {
        const page = truth.hpa + (secret.gpa % (PAGE * 512 ** truth.level));
        if (sameBytes(this.#module.hostRead(page, SECRET_LENGTH), secret.bytes)) {
          this.#violate(
            'plaintext-exposed',
            `the host read the guest's secret at ${hex(secret.gpa)}`,
            secret.gpa,
          );
        }
      }
      const read = await this.#guest.read(secret.gpa, SECRET_LENGTH);
      if (read.kind === 'ok') {
        if (!sameBytes(read.data, secret.bytes)) {
          this.#violate(
            'integrity',
            `the guest read different data at ${hex(secret.gpa)} and did not notice`,
            secret.gpa,
          );
          this.#secrets.splice(i, 1);
        }
      } else {
        if (read.reason === 'tampered')
          this.#note('tamper-detected', `the guest found ${hex(secret.gpa)} replaced and quarantined it`);
        this.#secrets.splice(i, 1);
      }
    }
  }
}

/** `runs` without the parts that `holes` cover. */
function subtract(runs: readonly GpaRange[], holes: readonly GpaRange[]): GpaRange[] {
  let out = objectArray<GpaRange>();
  for (const r of runs) out.push(r);
  for (const hole of holes) {
    const next = objectArray<GpaRange>();
    for (const r of out) {
      if (hole.end <= r.start || hole.start >= r.end) next.push(r);
      else {
        if (r.start < hole.start) next.push({ start: r.start, end: hole.start });
        if (hole.end < r.end) next.push({ start: hole.end, end: r.end });
      }
    }
    out = next;
  }
  return out;
}

/** The first point of [start, end) that no range of `ranges` covers, or undefined when they cover it all. */
function firstUncovered(start: number, end: number, ranges: readonly GpaRange[]): number | undefined {
  let at = start;
  for (let moved = true; moved && at < end; ) {
    moved = false;
    for (const r of ranges) {
      if (r.start <= at && at < r.end) {
        at = r.end;
        moved = true;
      }
    }
  }
  return at < end ? at : undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The monitor of a safety case (`runGuestSafety`), which made its module, TD and guest itself and passes
 * {@link SafetyMonitor.afterConversion} the ranges and results of its own conversions: neither is checked again (per
 * case and per step of a fuzz campaign). `judgesPrivateClaims` false: {@link SafetyMonitor.afterConversion} does not
 * hold to-private claims against the module (a case whose scripted VMM keeps a record judges every claim itself with
 * that record, `checkClaims` in guest-safety.ts, and drops the monitor's to-private over-claims, which cannot know
 * what the VMM changed behind the guest's back: walking the private side for them was wasted). Not in the package's
 * API: a user's monitor checks everything.
 */
export function trustedSafetyMonitor(
  options: SafetyMonitorOptions,
  judgesPrivateClaims = true,
): SafetyMonitor {
  trusted = { judgesPrivateClaims };
  try {
    return new SafetyMonitor(options);
  } finally {
    trusted = undefined;
  }
}
