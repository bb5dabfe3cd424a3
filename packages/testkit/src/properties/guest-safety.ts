import {
  type ConversionResult,
  GuestError,
  type GuestPolicy,
  type GuestPresetName,
  guestPresets,
  type LedgerMismatch,
  TdGuest,
} from '@tdxsim/guest';
import {
  type BuiltTd,
  buildTd,
  checkpointTd,
  composeTd,
  type Gpaw,
  SeptState,
  type SeptStateName,
  septStateInfo,
  type TdCheckpoint,
  TdxModule,
  type TraceSink,
} from '@tdxsim/tdx-module';
import type { ContainerModule } from 'inversify';
import { ScriptedVmm, type ScriptedVmmRecord, trustedScriptedVmm } from '../backends/scripted-vmm.js';
import { parseBehaviour } from '../behaviour/parse-behaviour.js';
import type { VmmBehaviour } from '../behaviour/vmm-behaviour.js';
import { testkitLogger } from '../log.js';
import { objectArray } from '../object-array.js';
import {
  SafetyMonitor,
  type SafetyMonitorOptions,
  type SafetyNote,
  type SafetyRule,
  trustedSafetyMonitor,
} from '../safety/safety-monitor.js';
import { checkSafetyCase } from './safety-case-arguments.js';
import { DEFAULT_SAFETY_WORKLOAD, type SafetyWorkload, type WorkloadStep } from './safety-workload.js';

const log = testkitLogger('safety');
const PAGE = 4096;

/**
 * A broken guest-safety property: the {@link SafetyMonitor}'s rules, plus
 * - `overclaim-shared`: reported converted to shared, not converted, and the VMM did not acknowledge it (the only
 *   to-shared claim a guest can be held to: a VMM that lies in its acknowledgement fools every guest);
 * - `exceeded-bound`: more MapGPA calls than the guest's own bound (or the simulator's fuse) allows;
 * - `unknown-not-quarantined`: a page the result calls unknown is not quarantined in the ledger;
 * - `quarantine-not-enforced`: converting a quarantined page did not throw QUARANTINED before any hypercall;
 * - `ledger-overclaim`: the ledger says private-accepted for a page the module does not hold MAPPED;
 * - `guest-threw`: the guest threw something other than QUARANTINED for a quarantined range.
 */
export type GuestSafetyRule =
  | SafetyRule
  | 'overclaim-shared'
  | 'exceeded-bound'
  | 'unknown-not-quarantined'
  | 'quarantine-not-enforced'
  | 'ledger-overclaim'
  | 'guest-threw';

/** One broken guest safety property: the rule and what was seen. */
export interface GuestSafetyViolation {
  readonly rule: GuestSafetyRule;
  readonly message: string;
}

/**
 * One case for {@link checkGuestSafety}: a VMM (a behaviour script or a backend), a guest, a workload and the
 * GPA width.
 */
export interface GuestSafetyCase {
  /** The VMM: a behaviour script (run by the scripted backend, fast) or any backend's ContainerModule. */
  readonly vmm: VmmBehaviour | ContainerModule;
  /** The guest: a preset name or a policy. */
  readonly guest: GuestPresetName | GuestPolicy;
  readonly workload?: SafetyWorkload;
  readonly gpaw?: Gpaw;
  /**
   * The sampled checks — the module's full invariant check (every SEPT entry, PAMT entry and shared frame) and the
   * planted secrets (the host must not read them, the guest must read them back intact or notice) — after every N-th
   * step and after the last (default 1: every step). The per-step properties (claims, bounds, unknown pages
   * quarantined and refused, quarantine kept, the ledger's private claims) run after every step regardless. A larger
   * N misses an invariant that one step breaks and a later step repairs before the next check (the end state alone
   * cannot show it) and a secret readable by the host only in between (the guest gave the page up before the check),
   * and a violation found is attributed to the step of the check, not the step that caused it.
   */
  readonly checkEvery?: number;
}

/**
 * What {@link checkGuestSafety} found: whether the guest stayed safe, the violations, the VMM misbehaviour it
 * survived and what the guest reported per step.
 */
export interface GuestSafetyReport {
  readonly safe: boolean;
  readonly violations: readonly GuestSafetyViolation[];
  /** VMM misbehaviour seen that did not make the guest unsafe. */
  readonly notes: readonly SafetyNote[];
  /** One line per workload step: what the guest reported. */
  readonly outcomes: readonly string[];
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const isContainerModule = (vmm: VmmBehaviour | ContainerModule): vmm is ContainerModule => !('steps' in vmm);

/** The TDMR of a safety case's module. */
const SAFETY_TDMR = { base: 2 ** 32, size: 2 ** 30 };

/** One checkpoint of a freshly built TD per GPA width, taken on first use (a build costs more than a restore). */
const builtTds = new Map<Gpaw, Promise<TdCheckpoint>>();
/** The checkpoints of {@link builtTds} once taken: a case restores from one without awaiting its promise again. */
const takenTds = new Map<Gpaw, TdCheckpoint>();

function builtTd(gpaw: Gpaw): Promise<TdCheckpoint> {
  let checkpoint = builtTds.get(gpaw);
  if (checkpoint === undefined) {
    checkpoint = (async () => {
      const module = new TdxModule({ tdmr: SAFETY_TDMR });
      const taken = checkpointTd(module, await buildTd(module, { gpaw }));
      takenTds.set(gpaw, taken);
      return taken;
    })();
    // A build that failed is not remembered: the next case tries again (and reports its error).
    checkpoint.catch(() => builtTds.delete(gpaw));
    builtTds.set(gpaw, checkpoint);
  }
  return checkpoint;
}

/**
 * Builds the TD and boots the guest. For a script: no container, and the TD is restored from a checkpoint of one built
 * TD rather than built again (a restore costs a fraction of a build; the state is the same, see `checkpointTd`).
 */
async function boot(safetyCase: GuestSafetyCase, memoryBytes: number, setUp: SafetyCaseSetUp) {
  const policy = safetyCase.guest;
  const build = { gpaw: safetyCase.gpaw ?? 48 };
  const tdmr = SAFETY_TDMR;
  if (isContainerModule(safetyCase.vmm)) {
    const composed = await composeTd({ vmm: safetyCase.vmm, build, sim: { module: { tdmr } } });
    const guest = await TdGuest.boot(composed.td.guest(0), { memoryBytes, policy });
    return {
      module: composed.module,
      td: composed.td,
      guest,
      record: recordOf(composed.hosted.vmm),
      // The TD and module came from the backend's factory: its monitor checks them.
      trusted: false,
    };
  }
  // Every scripted case starts from the same built TD: restored from a checkpoint taken once per GPA width (once
  // taken, without an await: no promise per case).
  const taken = setUp.from === 'restore' && setUp.trace === undefined ? takenTds.get(build.gpaw) : undefined;
  const { module, td: built } =
    taken === undefined ? await scriptedCaseTd(build.gpaw, setUp) : taken.restore(NO_SERVICES);
  // The module and TD are this function's own and the behaviour parsed or generated: nothing to check again.
  const vmm = trustedScriptedVmm(module, built, safetyCase.vmm);
  // A backend that throws ends its host thread; the guest then fails its next TDCALL, which the report shows.
  for (const thread of vmm.run()) thread.catch((error: unknown) => log('the VMM threw: %o', error));
  const guest = await TdGuest.boot(vmm.td.guest(0), { memoryBytes, policy });
  return { module, td: vmm.td, guest, record: vmm.record, trusted: true };
}

/**
 * How a scripted safety case gets its TD: restored from the checkpoint (what every case does) or built afresh (tests
 * that hold a restore to a build), with the trace the case's module records into (default none).
 */
export interface SafetyCaseSetUp {
  readonly from: 'restore' | 'build';
  readonly trace?: TraceSink;
}

const RESTORE: SafetyCaseSetUp = { from: 'restore' };
/** The services of a case's restored module without a trace: the checkpoint's defaults. */
const NO_SERVICES = {};

/**
 * What {@link runGuestSafety} reports: everything (`full`), or the verdict alone (`verdict`: the same checks and
 * violations, no outcome line per step; what a campaign, which reads only `safe`, asks for).
 */
export type SafetyReportKind = 'full' | 'verdict';

async function scriptedCaseTd(
  gpaw: Gpaw,
  setUp: SafetyCaseSetUp,
): Promise<{ module: TdxModule; td: BuiltTd }> {
  const services = setUp.trace === undefined ? {} : { trace: setUp.trace };
  if (setUp.from === 'restore') return (await builtTd(gpaw)).restore(services);
  const module = new TdxModule({ tdmr: SAFETY_TDMR }, services);
  return { module, td: await buildTd(module, { gpaw }) };
}

/** The checkpoint scripted cases of GPA width `gpaw` restore (tests: it must not change whatever the cases do). */
export function scriptedCaseCheckpoint(gpaw: Gpaw): Promise<TdCheckpoint> {
  return builtTd(gpaw);
}

function recordOf(vmm: unknown): ScriptedVmmRecord | undefined {
  return vmm instanceof ScriptedVmm ? vmm.record : undefined;
}

/**
 * Runs a guest through a workload against a VMM and checks, after every step, the safety properties a guest must
 * keep against any VMM: it stops within its bound, it never reports a page converted that is not (to private: the
 * page must be MAPPED; to shared: only where the VMM acknowledged it without doing it is it excused), the pages it
 * cannot vouch for are quarantined and stay so, no secret it keeps in private memory is readable by the host, it
 * never reads back altered data unnoticed, and the module's own invariants hold (the VMM-owned shared-EPT rules
 * are notes: a hostile VMM may break them). Never throws for what the VMM does.
 */
export async function checkGuestSafety(safetyCase: GuestSafetyCase): Promise<GuestSafetyReport> {
  checkSafetyCase(safetyCase, GUEST_PRESET_NAMES);
  if (isContainerModule(safetyCase.vmm)) return runGuestSafety(safetyCase);
  // The parsed copy runs: runGuestSafety takes a behaviour as parsed (or generated) and does not check it again.
  return runGuestSafety({ ...safetyCase, vmm: parseBehaviour(safetyCase.vmm) });
}

/**
 * {@link checkGuestSafety} without checking its case first: for callers whose case is valid by construction (a fuzz
 * campaign's generated cases), so that a campaign does not validate again, per case, what its arbitrary guarantees.
 * Not exported from the package: users get the checked entry point and its typed errors.
 */
export async function runGuestSafety(
  safetyCase: GuestSafetyCase,
  setUp: SafetyCaseSetUp = RESTORE,
  report: SafetyReportKind = 'full',
): Promise<GuestSafetyReport> {
  const workload = safetyCase.workload ?? DEFAULT_SAFETY_WORKLOAD;
  const checkEvery = safetyCase.checkEvery ?? 1;
  const { module, td, guest, record, trusted } = await boot(safetyCase, workload.memoryPages * PAGE, setUp);
  const policy = guest.policy;
  // A scripted case's own TD needs no check again; a container's came from the backend's factory. A scripted case's
  // to-private claims are judged with its VMM's record (checkClaims), not by its monitor.
  const monitorOptions: SafetyMonitorOptions = { module, tdr: td.tdr, guest };
  const monitor = trusted ? trustedSafetyMonitor(monitorOptions, false) : new SafetyMonitor(monitorOptions);
  const violations: GuestSafetyViolation[] = objectArray();
  // A campaign reads only the verdict: the lines that describe each step are not made for it.
  const outcomes: string[] | undefined = report === 'full' ? objectArray() : undefined;
  const fail = (rule: GuestSafetyRule, message: string): void => {
    log('%s: %s', rule, message);
    violations.push({ rule, message });
  };

  const steps = workload.steps;
  for (let n = 0; n < steps.length; n++) {
    const step = steps[n] as WorkloadStep;
    if (step.op === 'accept-all') {
      const accepted = await guest.acceptAll();
      outcomes?.push(`accept-all: ${accepted.kind}`);
    } else {
      // Named in messages only: made when one is (a campaign's case passes without any).
      const where = (): string =>
        `step ${n} (${step.op} pages ${step.startPage}..${step.startPage + step.pages})`;
      const outcome = await convert(guest, step, record, where, fail);
      if (outcome !== undefined) {
        outcomes?.push(`${where()}: ${describe(outcome.result)}`);
        const range = { start: step.startPage * PAGE, end: (step.startPage + step.pages) * PAGE };
        const before = monitor.violations.length;
        await monitor.afterConversion(range, step.op === 'to-shared', outcome.result);
        if (record !== undefined && monitor.violations.length > before) rejudgePrivateClaims(monitor, before);
        checkClaims(module, td.tdr, range, step.op === 'to-shared', outcome.result, record, fail, where);
        await probeQuarantine(guest, outcome.result, record, fail, where);
      } else {
        outcomes?.push(`${where()}: QUARANTINED`);
      }
    }
    // The module's invariants, the planted secrets (read through the guest) and the backend's view are sampled; the
    // quarantine rule reads only the ledger and holds after every step.
    if ((n + 1) % checkEvery === 0 || n === steps.length - 1) await monitor.check();
    else monitor.checkQuarantine();
    const mismatches = guest.check(module, td.tdr);
    if (mismatches.length > 0) ledgerOverclaims(mismatches, record, fail, n);
  }
  const all = [...monitor.violations.map((v) => ({ rule: v.rule, message: v.message })), ...violations];
  return { safe: all.length === 0, violations: all, notes: monitor.notes, outcomes: outcomes ?? [] };

  async function convert(
    g: TdGuest,
    step: Extract<WorkloadStep, { startPage: number }>,
    rec: ScriptedVmmRecord | undefined,
    where: () => string,
    failWith: typeof fail,
  ): Promise<{ result: ConversionResult } | undefined> {
    const start = step.startPage * PAGE;
    const size = step.pages * PAGE;
    // Counted, not listed: most conversions touch no quarantined page, and a list of runs per step was garbage.
    const touchesQuarantine = g.ledger.bytesIn({ start, end: start + size }, 'quarantined') > 0;
    const callsBefore = rec?.mapGpaCalls ?? 0;
    const bound = segmentPages(g, start, start + size, step.op === 'to-shared').reduce(
      (sum, pages) => sum + (policy.mapGpa.callBound?.(pages) ?? pages * 16 + 64),
      0,
    );
    try {
      const convert = (): Promise<ConversionResult> =>
        step.op === 'to-shared' ? g.setShared(start, size) : g.setPrivate(start, size);
      // Into a quarantined page the guest must throw QUARANTINED: an expected error, made without a stack trace.
      const result = await (touchesQuarantine ? expectingGuestError(convert) : convert());
      if (touchesQuarantine)
        failWith('quarantine-not-enforced', `${where()}: touches a quarantined page, did not throw`);
      const seen = rec === undefined ? result.mapGpaCalls : rec.mapGpaCalls - callsBefore;
      if (seen !== result.mapGpaCalls)
        failWith(
          'exceeded-bound',
          `${where()}: the VMM saw ${seen} MapGPA calls, the guest reported ${result.mapGpaCalls}`,
        );
      if (seen > bound) failWith('exceeded-bound', `${where()}: ${seen} MapGPA calls, bound ${bound}`);
      return { result };
    } catch (error) {
      if (GuestError.is(error) && error.code === 'QUARANTINED' && touchesQuarantine) {
        if ((rec?.mapGpaCalls ?? 0) !== callsBefore)
          failWith('quarantine-not-enforced', `${where()}: MapGPA issued before QUARANTINED`);
        return undefined;
      }
      failWith('guest-threw', `${where()}: threw ${String(error)}`);
      return undefined;
    }
  }
}

/**
 * The sizes (in pages) of the MapGPA requests the guest makes for a conversion: maximal runs of pages not yet on
 * the target side (the guest coalesces them; its call bound applies to each, guest README "What it does").
 */
function segmentPages(guest: TdGuest, start: number, end: number, toShared: boolean): number[] {
  const sizes: number[] = [];
  let open = false;
  for (const run of guest.ledger.runs({ start, end })) {
    const needs = toShared ? run.state !== 'shared' : run.state === 'shared';
    const pages = (run.end - run.start) / PAGE;
    if (needs && open) sizes[sizes.length - 1] = (sizes[sizes.length - 1] ?? 0) + pages;
    else if (needs) sizes.push(pages);
    open = needs;
  }
  return sizes;
}

/**
 * The monitor cannot know which pages the VMM re-added after the guest accepted them: its to-private claims found since
 * `before` are re-judged with that knowledge (the scripted VMM's record: {@link checkClaims} judges them). Rare: out of
 * the step loop, so that a case reaching it does not recompile the loop.
 */
function rejudgePrivateClaims(monitor: SafetyMonitor, before: number): void {
  const added = monitor.violations.splice(before);
  monitor.violations.push(...added.filter((v) => v.rule !== 'overclaim-private'));
}

/**
 * The ledger's private claims the module contradicts after step `n` (`guest.check`'s mismatches), but for frames the
 * VMM changed behind the guest's back: one `ledger-overclaim` per mismatched run. Rare, as {@link rejudgePrivateClaims}.
 */
function ledgerOverclaims(
  mismatches: readonly LedgerMismatch[],
  record: ScriptedVmmRecord | undefined,
  fail: (rule: GuestSafetyRule, message: string) => void,
  n: number,
): void {
  for (const mismatch of mismatches) {
    if (mismatch.ledger !== 'private-accepted') continue;
    const first = Math.floor(mismatch.start / PAGE);
    const last = Math.ceil(mismatch.end / PAGE);
    for (let frame = first; frame < last; frame++) {
      // Frames the VMM changed behind the guest's back: the property does not hold them against it.
      if (record?.behindTheGuestsBack.has(frame) === true) continue;
      fail(
        'ledger-overclaim',
        `after step ${n}: ledger private-accepted at ${hex(frame * PAGE)}, module ${mismatch.module}`,
      );
      break;
    }
  }
}

function describe(result: ConversionResult): string {
  if (result.kind === 'ok') return `ok in ${result.mapGpaCalls} MapGPA calls`;
  const failure = result.failure;
  const why = failure.step === 'map-gpa' ? failure.failure.kind : `accept ${failure.failure.reason}`;
  const unknown = result.pages.filter((run) => run.outcome === 'unknown').length;
  return `failed (${failure.step}: ${why}) after ${result.mapGpaCalls} MapGPA calls, ${unknown} unknown run(s)`;
}

/** Every page the result calls converted really is, unless the VMM is to blame in a way no guest can see. */
function checkClaims(
  module: TdxModule,
  tdr: number,
  range: { start: number; end: number },
  toShared: boolean,
  result: ConversionResult,
  record: ScriptedVmmRecord | undefined,
  fail: (rule: GuestSafetyRule, message: string) => void,
  where: () => string,
): void {
  const claimed = result.kind === 'ok' ? [range] : result.pages.filter((run) => run.outcome === 'converted');
  const ept = module.sharedEpt(tdr);
  for (const run of claimed) {
    // The module's truth a run of pages in one state at a time (privateRun: one walk, no object per page); every
    // page of the run reads as privatePage says of it, and a leaf's host page is defined exactly when the state is
    // a leaf's.
    let truth = { state: 'FREE' as SeptStateName, end: 0, leaf: false };
    for (let gpa = run.start - (run.start % PAGE); gpa < run.end; gpa += PAGE) {
      const frame = gpa / PAGE;
      if (record?.behindTheGuestsBack.has(frame) === true) continue;
      if (gpa >= truth.end) {
        const read = module.privateRun(tdr, gpa, run.end);
        truth = { state: read.state, end: read.end, leaf: septStateInfo(SeptState[read.state]).leaf };
      }
      if (!toShared) {
        // Without the VMM's record the monitor's own check stands.
        if (record !== undefined && truth.state !== 'MAPPED')
          fail(
            'overclaim-private',
            `${where()}: ${hex(gpa)} reported converted to private, module holds ${truth.state}`,
          );
        continue;
      }
      const really = !truth.leaf && ept.lookup(gpa) !== undefined;
      // Lazy backends (KVM) map the shared side on first touch: without the VMM's record only the private side counts.
      if (record === undefined ? !truth.leaf : really) continue;
      if (record?.unbackedAcks.has(frame) === true) continue;
      fail(
        'overclaim-shared',
        `${where()}: ${hex(gpa)} reported converted to shared, not acknowledged by the VMM, private ${truth.state}, shared ${ept.lookup(gpa) === undefined ? 'unmapped' : 'mapped'}`,
      );
    }
  }
}

/** Unknown pages are quarantined, and converting one again throws QUARANTINED before any hypercall. */
async function probeQuarantine(
  guest: TdGuest,
  result: ConversionResult,
  record: ScriptedVmmRecord | undefined,
  fail: (rule: GuestSafetyRule, message: string) => void,
  where: () => string,
): Promise<void> {
  if (result.kind === 'ok') return;
  let probe: number | undefined;
  for (const run of result.pages) {
    if (run.outcome !== 'unknown') continue;
    for (const part of guest.ledger.runs(run)) {
      if (part.state !== 'quarantined')
        fail(
          'unknown-not-quarantined',
          `${where()}: unknown ${hex(part.start)}..${hex(part.end)} is ${part.state}`,
        );
    }
    probe = run.start - (run.start % PAGE);
  }
  if (probe === undefined || guest.ledger.stateOf(probe) !== 'quarantined') return;
  for (const toShared of [true, false]) {
    const before = record?.mapGpaCalls ?? 0;
    const at = probe;
    const code = await expectingGuestError(() =>
      toShared ? guest.setShared(at, PAGE) : guest.setPrivate(at, PAGE),
    ).then(
      () => 'no error',
      (error: unknown) => (GuestError.is(error) ? error.code : String(error)),
    );
    if (code !== 'QUARANTINED' || (record?.mapGpaCalls ?? 0) !== before)
      fail('quarantine-not-enforced', `${where()}: converting quarantined ${hex(probe)} again gave ${code}`);
  }
}

/**
 * Starts `call` with stack traces off while it runs synchronously: the guest's API errors (QUARANTINED) are thrown
 * before its first await, and a probe that expects one should not pay for a stack trace (capturing one across the
 * campaign's async frames was 6 % of a sequential fuzz case). Only the synchronous start is covered: anything thrown
 * later keeps its stack.
 */
function expectingGuestError<T>(call: () => Promise<T>): Promise<T> {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return call();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** The guest presets, for matrices and campaigns. */
export const GUEST_PRESET_NAMES = Object.keys(guestPresets) as GuestPresetName[];
