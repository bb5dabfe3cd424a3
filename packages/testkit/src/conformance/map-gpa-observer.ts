import {
  checkInvariants,
  hexTraceRegs,
  type SharedEpt,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TdxModule,
  type TraceEvent,
  type TraceRegs,
  type TraceSink,
  tdvmcallStatusName,
  VmExitReason,
} from '@tdxsim/tdx-module';
import { acknowledgedPages } from '../behaviour/acknowledged-pages.js';
import { TestkitError } from '../errors.js';
import {
  assertInteger,
  assertMethods,
  assertOneOf,
  assertOptions,
  assertPageAddress,
  assertString,
  MODULE_METHODS,
  show,
} from '../validation.js';
import { avoidableSeamcallError, isTlbTrackingError } from './avoidable-seamcall-error.js';
import { CONFORMANCE_RULES, type ConformanceRuleId } from './conformance-rules.js';

const PAGE = 4096;
/** The end of the guest-physical frames a shared EPT can map. */
const LIMIT = 2 ** 52;
const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** A private-side SEAMCALL of the backend while a MapGPA call was pending: its leaf and the GPA range it names. */
interface PrivateOp {
  readonly leaf: string;
  readonly start: number;
  readonly end: number;
}

interface PendingCall {
  readonly r12: bigint;
  readonly r13: bigint;
  /**
   * A copy of the shared EPT before the call (the VMM's own table, which no SEAMCALL changes): kept as runs, it costs
   * the table's runs, not its pages.
   */
  readonly sharedBefore: SharedEpt;
  /** Successful SEAMCALLs on private GPAs during the call. */
  readonly ops: PrivateOp[];
}

/** Where the observer is attached: the TD it watches and the label evidence carries. */
export interface ObservedTd {
  readonly module: TdxModule;
  readonly tdr: number;
  readonly gpaw: 48 | 52;
  readonly ramBytes: number;
  readonly label: string;
  /**
   * Several vCPUs convert at once (`runConformance`'s `scheduler`): a change made while a MapGPA call is pending may
   * belong to another vCPU's request or fault, and the observer cannot tell whose, so `conversion-within-request` is
   * not judged (every other rule is). Default false.
   */
  readonly concurrent?: boolean;
}

const RULE_IDS = CONFORMANCE_RULES.map((rule) => rule.id);

/** Leaves whose success changes a private page's backing (it appears, goes, or moves): never outside the request. */
const BACKING_LEAVES = new Set([
  'TDH.MEM.PAGE.AUG',
  'TDH.MEM.PAGE.REMOVE',
  'TDH.MEM.PAGE.ADD',
  'TDH.MEM.PAGE.RELOCATE',
]);
/** Leaves that change a page's state but not its backing: outside the request, the page must end as it was. */
const STATE_LEAVES = new Set(['TDH.MEM.RANGE.BLOCK', 'TDH.MEM.RANGE.UNBLOCK']);

/**
 * A trace sink that judges a backend from what crosses the boundary, wrapping nothing the backend sees: every
 * MapGPA exit (td-exit) and the VMM's reply (vmm-reply) are checked against the GHCI rules; the private-side
 * SEAMCALLs the backend made during the call (AUG, REMOVE, BLOCK, … with their GPAs) and its shared EPT before and
 * after are held against the request; every SEAMCALL status is classified. The caller checks the module's invariants
 * after each step ({@link checkInvariants}). Findings go to `evidence`, by rule.
 */
export class MapGpaObserver implements TraceSink {
  readonly enabled = true;
  readonly evidence = new Map<ConformanceRuleId, string[]>();
  mapGpaReplies = 0;
  seamcalls = 0;
  readonly #maxNoProgress: number;
  #td: ObservedTd | undefined;
  readonly #pending = new Map<number, PendingCall>();
  #noProgressStreak = 0;

  constructor(maxNoProgressRetries: number) {
    assertInteger('maxNoProgressRetries', maxNoProgressRetries, 0, 2 ** 20);
    this.#maxNoProgress = maxNoProgressRetries;
  }

  /** Starts judging MapGPA calls of this TD (SEAMCALLs are judged from the start). */
  attach(td: ObservedTd): void {
    assertOptions(
      'MapGpaObserver.attach',
      'td',
      td,
      ['module', 'tdr', 'gpaw', 'ramBytes', 'label', 'concurrent'],
      false,
    );
    assertMethods('td.module', td.module, 'a TdxModule', MODULE_METHODS);
    assertPageAddress('td.tdr', td.tdr);
    assertOneOf('td.gpaw', td.gpaw, [48, 52], false, 'INVALID_ARGUMENT');
    assertPageAddress('td.ramBytes', td.ramBytes);
    assertString('td.label', td.label);
    if (td.concurrent !== undefined && typeof td.concurrent !== 'boolean')
      throw new TestkitError('INVALID_ARGUMENT', 'td.concurrent must be a boolean', 'td.concurrent');
    this.#td = td;
    this.#pending.clear();
    this.#noProgressStreak = 0;
  }

  /** Records a finding; only the first few per rule are kept as evidence, the count is kept in full. */
  report(rule: ConformanceRuleId, text: string): void {
    assertOneOf('rule', rule, RULE_IDS, false, 'INVALID_ARGUMENT');
    if (typeof text !== 'string')
      throw new TestkitError('INVALID_ARGUMENT', `text must be a string, got ${show(text)}`, 'text');
    const list = this.evidence.get(rule) ?? [];
    list.push(text);
    this.evidence.set(rule, list);
  }

  /**
   * Receives one trace record: counts SEAMCALLs, keeps the evidence of each avoidable SEAMCALL error and holds each
   * MapGPA exchange against the conformance rules.
   */
  record(event: TraceEvent): void {
    if (typeof (event as { kind?: unknown } | null)?.kind !== 'string')
      throw new TestkitError(
        'INVALID_ARGUMENT',
        `event must be a TraceEvent (with a kind), got ${show(event)}`,
        'event',
      );
    if (event.kind === 'seamcall') {
      this.seamcalls++;
      const why = avoidableSeamcallError(event.status);
      const where = this.#td === undefined ? 'while building the TD' : this.#td.label;
      if (why !== undefined)
        this.report(
          isTlbTrackingError(event.status) ? 'tlb-tracking' : 'seamcall-no-state-errors',
          `${event.leaf} ${JSON.stringify(hexTraceRegs(event.args))} → ${why} (${where})`,
        );
      else if (event.status >> 63n === 0n) this.#notePrivateOp(event.leaf, event.args);
      return;
    }
    const td = this.#td;
    if (td === undefined) return;
    if (event.kind === 'td-exit') {
      const rax = event.regs['rax'] ?? 0n;
      if (Number(rax & 0xffffn) !== VmExitReason.TDCALL) return;
      if ((event.regs['r10'] ?? 1n) !== 0n || (event.regs['r11'] ?? 0n) !== TdvmcallSubfunction.MAP_GPA)
        return;
      this.#pending.set(event.vcpu, {
        r12: event.regs['r12'] ?? 0n,
        r13: event.regs['r13'] ?? 0n,
        sharedBefore: td.module.sharedEpt(td.tdr).clone(),
        ops: [],
      });
      return;
    }
    if (event.kind === 'vmm-reply') {
      const call = this.#pending.get(event.vcpu);
      if (call === undefined) return;
      this.#pending.delete(event.vcpu);
      this.#judge(td, call, event.regs['r10'] ?? 0n, event.regs['r11'] ?? 0n);
    }
  }

  /** Notes a successful private-side SEAMCALL against every MapGPA call in flight. */
  #notePrivateOp(leaf: string, args: TraceRegs): void {
    if (this.#pending.size === 0 || (!BACKING_LEAVES.has(leaf) && !STATE_LEAVES.has(leaf))) return;
    // RCX = GPA | level (reference tdx-module.md, page-info operand).
    const rcx = Number(args['rcx'] ?? 0n);
    const level = rcx % 8;
    const start = rcx - (rcx % PAGE);
    const op = { leaf, start, end: start + PAGE * 512 ** level };
    for (const call of this.#pending.values()) call.ops.push(op);
  }

  #judge(td: ObservedTd, call: PendingCall, r10: bigint, r11: bigint): void {
    this.mapGpaReplies++;
    const shared = 2n ** BigInt(td.gpaw - 1);
    const { r12, r13 } = call;
    const what = `MapGPA R12=${hex(r12)} R13=${hex(r13)} → R10=${hex(r10)} R11=${hex(r11)} (${td.label}, reply ${this.mapGpaReplies})`;
    if (tdvmcallStatusName(r10) === undefined)
      this.report('ghci-status', `R10 ${hex(r10)} is not a GHCI status: ${what}`);
    if (r10 === TdvmcallStatus.RETRY) {
      const start = r12 & ~shared;
      const at = r11 & ~shared;
      if (at < start || at >= start + r13)
        this.report('retry-r11-in-range', `R11 outside [R12, R12 + R13): ${what}`);
      if (r11 % BigInt(PAGE) !== 0n) this.report('retry-r11-aligned', `R11 not 4 KiB-aligned: ${what}`);
      if ((r11 & shared) !== (r12 & shared))
        this.report('retry-r11-direction', `R11's shared bit differs from R12's: ${what}`);
      this.#noProgressStreak = r11 === r12 ? this.#noProgressStreak + 1 : 0;
      if (this.#noProgressStreak > this.#maxNoProgress)
        this.report(
          'retry-progress',
          `${this.#noProgressStreak} RETRYs in a row without progress (allowed ${this.#maxNoProgress}): ${what}`,
        );
    } else {
      this.#noProgressStreak = 0;
    }
    const toShared = (r12 & shared) !== 0n;
    const first = Number(r12 & ~shared) / PAGE;
    const asked = Number(r13) / PAGE;
    const ept = td.module.sharedEpt(td.tdr);
    // Well-formed requests only: a refused one (unaligned, wrapping) has nothing to back.
    if (r12 % BigInt(PAGE) === 0n && r13 % BigInt(PAGE) === 0n && r13 > 0n) {
      const acked = acknowledgedPages(r12, r13, r10, r11, shared);
      for (let frame = first; frame < first + acked; frame++) {
        const gpa = frame * PAGE;
        if (gpa >= td.ramBytes) break;
        const privateLeft = toShared ? privateLeaf(td, gpa) : undefined;
        const sharedLeft = toShared ? undefined : ept.lookup(gpa);
        if (privateLeft !== undefined || sharedLeft !== undefined) {
          this.report(
            'conversion-backed',
            `${hex(gpa)} acknowledged ${privateLeft !== undefined ? `shared but still private ${privateLeft}` : `private but still mapped shared at ${hex(sharedLeft ?? 0)}`}: ${what}`,
          );
          break;
        }
      }
    }
    // Several vCPUs converting at once: what changed outside this request may be another vCPU's doing.
    if (td.concurrent === true) return;
    const inRequest = (start: number, end: number): boolean =>
      start >= first * PAGE && end <= (first + asked) * PAGE;
    const outside = call.ops.find(
      (op) =>
        !inRequest(op.start, op.end) &&
        (BACKING_LEAVES.has(op.leaf) || privateLeaf(td, op.start)?.includes('BLOCKED') === true),
    );
    if (outside !== undefined) {
      this.report(
        'conversion-within-request',
        `private side of ${hex(outside.start)}..${hex(outside.end)} changed outside the request (${outside.leaf}): ${what}`,
      );
    }
    // The first frame outside the request whose shared mapping changed during the call, below it or above it (the
    // request as asked: it may be unaligned or reach past the frames a shared EPT has).
    const frameAtOrAbove = (gpa: number): number => Math.min(Math.ceil(gpa / PAGE) * PAGE, LIMIT);
    const frame =
      ept.firstDifference(call.sharedBefore, 0, frameAtOrAbove(first * PAGE)) ??
      ept.firstDifference(call.sharedBefore, frameAtOrAbove((first + asked) * PAGE), LIMIT);
    if (frame !== undefined) {
      const was = call.sharedBefore.lookup(frame);
      const is = ept.lookup(frame);
      this.report(
        'conversion-within-request',
        `shared side of ${hex(frame)} changed outside the request (${was === undefined ? 'none' : hex(was)} → ${is === undefined ? 'none' : hex(is)}): ${what}`,
      );
    }
  }

  /** Checks every module invariant, the VMM-owned shared-EPT ones included. */
  checkInvariants(when: string): void {
    const td = this.#td;
    if (td === undefined) return;
    for (const violation of checkInvariants(td.module))
      this.report('module-invariants', `[${violation.rule}] ${violation.message} ${when}`);
  }
}

/** The private leaf mapping `gpa` as `STATE@hpa`, or undefined when no page backs it. */
function privateLeaf(td: ObservedTd, gpa: number): string | undefined {
  const truth = td.module.privatePage(td.tdr, gpa);
  if (truth.hpa === undefined) return undefined;
  const span = PAGE * 512 ** truth.level;
  return `${truth.state}@${hex(truth.hpa + (gpa % span))}`;
}
