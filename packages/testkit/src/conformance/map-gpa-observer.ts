import {
  checkInvariants,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TdxModule,
  type TraceEvent,
  type TraceSink,
  tdvmcallStatusName,
  VmExitReason,
} from '@tdxsim/tdx-module';
import { acknowledgedPages } from '../behaviour/acknowledged-pages.js';
import { avoidableSeamcallError } from './avoidable-seamcall-error.js';
import type { ConformanceRuleId } from './conformance-rules.js';

const PAGE = 4096;
const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** Which side each frame of guest RAM is on: private leaf (state@hpa) and shared-EPT host page. */
interface Snapshot {
  readonly private: Map<number, string>;
  readonly shared: Map<number, string>;
}

interface PendingCall {
  readonly r12: bigint;
  readonly r13: bigint;
  readonly before: Snapshot;
}

/** Where the observer is attached: the TD it watches and the label evidence carries. */
export interface ObservedTd {
  readonly module: TdxModule;
  readonly tdr: number;
  readonly gpaw: 48 | 52;
  readonly ramBytes: number;
  readonly label: string;
}

/**
 * A trace sink that judges a backend from what crosses the boundary, wrapping nothing the backend sees: every
 * MapGPA exit (td-exit) and the VMM's reply (vmm-reply) are checked against the GHCI rules, the TD's private and
 * shared sides are compared before and after each call, every SEAMCALL status is classified, and the module's
 * invariants are checked after each reply. Findings go to `evidence`, by rule.
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
    this.#maxNoProgress = maxNoProgressRetries;
  }

  /** Starts judging MapGPA calls of this TD (SEAMCALLs are judged from the start). */
  attach(td: ObservedTd): void {
    this.#td = td;
    this.#pending.clear();
    this.#noProgressStreak = 0;
  }

  /** Records a finding; only the first few per rule are kept as evidence, the count is kept in full. */
  report(rule: ConformanceRuleId, text: string): void {
    const list = this.evidence.get(rule) ?? [];
    list.push(text);
    this.evidence.set(rule, list);
  }

  /**
   * Receives one trace record: counts SEAMCALLs, keeps the evidence of each avoidable SEAMCALL error and holds each
   * MapGPA exchange against the conformance rules.
   */
  record(event: TraceEvent): void {
    if (event.kind === 'seamcall') {
      this.seamcalls++;
      const why = avoidableSeamcallError(event.status);
      const where = this.#td === undefined ? 'while building the TD' : this.#td.label;
      if (why !== undefined)
        this.report(
          'seamcall-no-state-errors',
          `${event.leaf} ${JSON.stringify(event.args)} → ${why} (${where})`,
        );
      return;
    }
    const td = this.#td;
    if (td === undefined) return;
    if (event.kind === 'td-exit') {
      const rax = BigInt(event.regs['rax'] ?? '0');
      if (Number(rax & 0xffffn) !== VmExitReason.TDCALL) return;
      if (
        BigInt(event.regs['r10'] ?? '1') !== 0n ||
        BigInt(event.regs['r11'] ?? '0') !== TdvmcallSubfunction.MAP_GPA
      )
        return;
      this.#pending.set(event.vcpu, {
        r12: BigInt(event.regs['r12'] ?? '0'),
        r13: BigInt(event.regs['r13'] ?? '0'),
        before: snapshot(td),
      });
      return;
    }
    if (event.kind === 'vmm-reply') {
      const call = this.#pending.get(event.vcpu);
      if (call === undefined) return;
      this.#pending.delete(event.vcpu);
      this.#judge(td, call, BigInt(event.regs['r10'] ?? '0'), BigInt(event.regs['r11'] ?? '0'));
    }
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
    const after = snapshot(td);
    const toShared = (r12 & shared) !== 0n;
    const first = Number(r12 & ~shared) / PAGE;
    const asked = Number(r13) / PAGE;
    // Well-formed requests only: a refused one (unaligned, wrapping) has nothing to back.
    if (r12 % BigInt(PAGE) === 0n && r13 % BigInt(PAGE) === 0n && r13 > 0n) {
      const acked = acknowledgedPages(r12, r13, r10, r11, shared);
      for (let frame = first; frame < first + acked; frame++) {
        const left = toShared ? after.private.get(frame) : after.shared.get(frame);
        if (left !== undefined) {
          this.report(
            'conversion-backed',
            `${hex(frame * PAGE)} acknowledged ${toShared ? 'shared but still private ' : 'private but still mapped shared at '}${left}: ${what}`,
          );
          break;
        }
      }
    }
    for (const [side, before, now] of [
      ['private', call.before.private, after.private],
      ['shared', call.before.shared, after.shared],
    ] as const) {
      for (const frame of new Set([...before.keys(), ...now.keys()])) {
        if (frame >= first && frame < first + asked) continue;
        const was = before.get(frame);
        const is = now.get(frame);
        if (was === is) continue;
        this.report(
          'conversion-within-request',
          `${side} side of ${hex(frame * PAGE)} changed outside the request (${String(was ?? 'none')} → ${String(is ?? 'none')}): ${what}`,
        );
        break;
      }
    }
    this.checkInvariants(`after reply ${this.mapGpaReplies} (${td.label})`);
  }

  /** Checks every module invariant, the VMM-owned shared-EPT ones included. */
  checkInvariants(when: string): void {
    const td = this.#td;
    if (td === undefined) return;
    for (const violation of checkInvariants(td.module))
      this.report('module-invariants', `[${violation.rule}] ${violation.message} ${when}`);
  }
}

/** The sides of every frame of guest RAM, walking the Secure-EPT by leaf (a 2M leaf or empty 1G is one step). */
function snapshot(td: ObservedTd): Snapshot {
  const privateSide = new Map<number, string>();
  for (let gpa = 0; gpa < td.ramBytes; ) {
    const truth = td.module.privatePage(td.tdr, gpa);
    const span = PAGE * 512 ** truth.level;
    const base = gpa - (gpa % span);
    if (truth.hpa !== undefined) {
      for (let at = Math.max(base, gpa); at < Math.min(base + span, td.ramBytes); at += PAGE)
        privateSide.set(at / PAGE, `${truth.state}@${hex(truth.hpa + (at - base))}`);
    }
    gpa = base + span;
  }
  const sharedSide = new Map<number, string>();
  for (const [frame, hpa] of td.module.sharedEpt(td.tdr).entries()) sharedSide.set(frame / PAGE, hex(hpa));
  return { private: privateSide, shared: sharedSide };
}
