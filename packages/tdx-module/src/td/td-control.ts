import { createHash, type Hash } from 'node:crypto';
import type { Gpaw } from '../abi/gpa.js';
import { LifecycleState, OpState } from '../abi/td-state.js';
import { PlainSharexLock } from '../locks/plain-lock.js';
import type { SeptTree } from '../sept/sept-tree.js';
import type { VcpuState } from './vcpu.js';

/** TDR + TDCS of one TD: everything the module keeps per TD. */
export class TdControl {
  readonly tdr: number;
  readonly hkid: number;
  lifecycle: number = LifecycleState.HKID_ASSIGNED;
  opState: number = OpState.UNINITIALIZED;
  /** OP_STATE host-priority lock word. */
  opStateLock = 0;
  fatal = false;
  readonly tdcx: number[] = [];
  /** 4K units of pages the TD owns (SEPT pages, private pages, control pages): TDR "chldcnt". */
  childCount = 0;
  gpaw: Gpaw = 48;
  pwl = 3;
  attributes = 0n;
  configFlags = 0n;
  maxVcpus = 0;
  /** TD epoch and the two vCPU reference counts indexed by epoch parity (reference §8). */
  epoch = 1;
  /**
   * Made by `Array.of`, not a literal: V8 gives a constant array literal another backing store at its second and
   * third run (an allocation site, then a copy-on-write boilerplate), and TDH.VP.ENTER's code, compiled for the first
   * TD's array, was thrown away ("wrong map") at the first entry of each of the next two scenarios of a process.
   */
  readonly epochRefcount = Array.of(0, 0) as [number, number];

  /** Adds `delta` to the vCPU reference count of the epoch with parity `epoch & 1`. */
  adjustEpochRef(epoch: number, delta: number): void {
    const slot = epoch & 1;
    this.epochRefcount[slot] = (this.epochRefcount[slot] ?? 0) + delta;
  }
  readonly epochLock = new PlainSharexLock();
  readonly septTreeLock = new PlainSharexLock();
  sept: SeptTree | undefined;

  /** The Secure-EPT; exists from TDH.MNG.INIT on (every leaf that reaches it is gated on OP_STATE). */
  get tree(): SeptTree {
    if (this.sept === undefined) throw new Error('model bug: SEPT used before TDH.MNG.INIT');
    return this.sept;
  }
  readonly vcpus = new Map<number, VcpuState>();
  /** Host-priority lock timeout in virtual nanoseconds (default 1 s, reference §10.5). */
  hpLockTimeoutNs = 1_000_000_000;
  /** PENDING_VE_DISABLE, from ATTRIBUTES.SEPT_VE_DISABLE at init. */
  pendingVeDisable = false;
  /** The measurement in progress: made at the first extension, dropped once finalised (a digested hash is spent). */
  #mrtd: Hash | undefined;
  /** The finalised measurement: a digest, never written in place, so that copies share it (see {@link clone}). */
  mrtd: Readonly<Buffer> | undefined;

  constructor(tdr: number, hkid: number, mrtd?: Hash) {
    this.tdr = tdr;
    this.hkid = hkid;
    this.#mrtd = mrtd;
  }

  /**
   * An independent copy of the TD's control structures (checkpoints): fields, S-EPT, vCPUs and the measurement in
   * progress. Lock words are not copied: a checkpoint refuses a TD whose locks are held (see `checkpoint/`).
   */
  clone(): TdControl {
    const copy = new TdControl(this.tdr, this.hkid, this.#mrtd?.copy());
    copy.lifecycle = this.lifecycle;
    copy.opState = this.opState;
    copy.fatal = this.fatal;
    copy.tdcx.push(...this.tdcx);
    copy.childCount = this.childCount;
    copy.gpaw = this.gpaw;
    copy.pwl = this.pwl;
    copy.attributes = this.attributes;
    copy.configFlags = this.configFlags;
    copy.maxVcpus = this.maxVcpus;
    copy.epoch = this.epoch;
    copy.epochRefcount[0] = this.epochRefcount[0];
    copy.epochRefcount[1] = this.epochRefcount[1];
    copy.sept = this.sept?.clone();
    for (const [tdvpr, vcpu] of this.vcpus) copy.vcpus.set(tdvpr, vcpu.clone());
    copy.hpLockTimeoutNs = this.hpLockTimeoutNs;
    copy.pendingVeDisable = this.pendingVeDisable;
    // Shared, not copied: nothing writes a digest once made (a restore per fuzz case copied 48 bytes into a Buffer).
    copy.mrtd = this.mrtd;
    return copy;
  }

  /** MRTD accumulates PAGE.ADD records and MR.EXTEND chunks until MR.FINALIZE. */
  extendMeasurement(data: Uint8Array): void {
    this.#mrtd ??= createHash('sha384');
    this.#mrtd.update(data);
  }

  finalizeMeasurement(): void {
    this.mrtd = (this.#mrtd ?? createHash('sha384')).digest();
    this.#mrtd = undefined;
  }
}
