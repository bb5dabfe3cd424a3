import { hypervVmm } from '@tdxsim/host-hyperv';
import { kvmVmm } from '@tdxsim/host-kvm';
import {
  type BackendSource,
  checkInvariants,
  composeTd,
  decodePageInfo,
  MemoryTraceSink,
  RangeMap,
  type Scheduler,
  SeededRng,
  type TdxModule,
  type TraceEvent,
  type Vmm,
} from '@tdxsim/tdx-module';
import { type GuestPresetName, TdGuest } from '../../src/index.js';

const PAGE = 4096;
const MIB = 2 ** 20;
/** Where the vCPUs' conversions overlap: 4 MiB, two 2M blocks and a bit. */
const WINDOW = { start: 2 * MIB, pages: 1024 + 64 };
/** Pages every vCPU reads and writes at once (concurrent lazy accepts of the same page). */
const HOT = [8 * MIB, 8 * MIB + PAGE, 8 * MIB + 2 * PAGE];
/** One private page per vCPU that nothing converts: what it writes there must read back. */
const OWN = (vcpu: number) => 12 * MIB + vcpu * PAGE;

export interface MultiVcpuScenarioOptions {
  /** vCPUs of the TD, all served by one guest (default 4). */
  readonly vcpus?: number;
  /** Seed of the workload and the simulation (default 1). */
  readonly seed?: number;
  /** The module's scheduler (default: run to completion). Explored schedulers plug in here. */
  readonly scheduler?: Scheduler;
  /** Where the run's trace goes (default: a sink of its own); an exploration gives its run's sink (`ctx.trace`). */
  readonly trace?: MemoryTraceSink;
  /**
   * The backend (default Hyper-V), or any other (a class, factory or ContainerModule). Before issue 13, two vCPUs
   * first touching one page made the KVM model AUG it twice and declare its VM dead; it now retries the fault as
   * merged KVM does, and this scenario runs clean on it.
   */
  readonly backend?: 'kvm' | 'hyperv' | BackendSource;
  /** Operations per vCPU (default 8). */
  readonly opsPerVcpu?: number;
  readonly preset?: GuestPresetName;
}

/** One operation a vCPU ran and how it ended. */
export interface ScenarioStep {
  readonly vcpu: number;
  readonly op: string;
  readonly outcome: string;
}

export interface MultiVcpuReport {
  /** Safety rules broken: empty when the guest held up. */
  readonly violations: readonly string[];
  readonly steps: readonly ScenarioStep[];
  /** Every TDCALL, SEAMCALL, exit and note of the run. */
  readonly trace: readonly TraceEvent[];
  /** The TD, for checkers that hold it against the truth (an exploration's quiescence checks). */
  readonly module: TdxModule;
  readonly tdr: number;
  readonly vmm: Vmm;
  readonly guest: TdGuest;
}

/**
 * A multi-vCPU guest scenario (issue 12, point 4), reusable under any scheduler: a TD with `vcpus` vCPUs and one
 * `TdGuest` serving them all; each vCPU runs its own seeded list of conversions (to shared, to private) of
 * overlapping ranges inside one 4 MiB window, reads and writes of the same few unaccepted pages (concurrent lazy
 * accepts), and a write/read of a page of its own — all vCPUs at once. At quiescence it checks: the ledger equals the
 * module's truth, nothing is left in conversion, the module's invariants hold, no page was accepted twice without a
 * removal in between, and each vCPU reads back what it wrote. Conversions that fail (BUSY past the policy's budget
 * under a hostile schedule) are not violations; what they leave must still be safe.
 */
export async function runMultiVcpuScenario(options: MultiVcpuScenarioOptions = {}): Promise<MultiVcpuReport> {
  const vcpus = options.vcpus ?? 4;
  const seed = options.seed ?? 1;
  const trace = options.trace ?? new MemoryTraceSink(10_000_000);
  const composed = await composeTd({
    vmm:
      options.backend === 'kvm'
        ? kvmVmm({ seed, pendingEventRate: 0.2 })
        : options.backend === undefined || options.backend === 'hyperv'
          ? hypervVmm({ seed, chunkPages: 64 })
          : options.backend,
    build: { gpaw: 48, vcpus },
    sim: {
      seed,
      trace,
      module: { tdmr: { base: 2 ** 36, size: 2 ** 33 } },
      ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
    },
  });
  const cpus = Array.from({ length: vcpus }, (_, i) => composed.td.guest(i));
  const guest = await TdGuest.boot(cpus, { memoryBytes: 16 * MIB, policy: options.preset ?? 'strict' });
  const steps: ScenarioStep[] = [];
  const violations: string[] = [];
  const rng = new SeededRng(seed);
  const plans = Array.from({ length: vcpus }, (_, vcpu) =>
    Array.from({ length: options.opsPerVcpu ?? 8 }, () => plan(rng, vcpu)),
  );
  const signature = (vcpu: number) => new Uint8Array([0x5a, vcpu, seed & 0xff, 0xa5]);
  await Promise.all(
    plans.map(async (ops, vcpu) => {
      const mine = await guest.write(OWN(vcpu), signature(vcpu), { vcpu });
      steps.push({ vcpu, op: 'write own page', outcome: mine.kind === 'ok' ? 'ok' : mine.reason });
      for (const op of ops) {
        let outcome: string;
        try {
          outcome = await op.run(guest, vcpu);
        } catch (error) {
          outcome = `threw ${String(error)}`;
          violations.push(`vCPU ${vcpu} ${op.name}: threw ${String(error)}`);
        }
        steps.push({ vcpu, op: op.name, outcome });
      }
      const back = await guest.read(OWN(vcpu), 4, { vcpu });
      if (back.kind !== 'ok' || back.data.join() !== signature(vcpu).join())
        violations.push(
          `vCPU ${vcpu}: its own page read back ${back.kind === 'ok' ? back.data.join() : back.reason}`,
        );
    }),
  );
  for (const mismatch of guest.check(composed.module, composed.td.tdr))
    violations.push(`ledger ≠ module: ${JSON.stringify(mismatch)}`);
  for (const run of guest.ledger.entries())
    if (run.state === 'converting') violations.push(`left in conversion: ${run.start}..${run.end}`);
  for (const broken of checkInvariants(composed.module))
    violations.push(`invariant ${broken.rule}: ${broken.message}`);
  if (trace.dropped > 0) violations.push(`trace dropped ${trace.dropped} events`);
  violations.push(...acceptedTwice(trace.events));
  return {
    violations,
    steps,
    trace: trace.events,
    module: composed.module,
    tdr: composed.td.tdr,
    vmm: composed.hosted.vmm,
    guest,
  };
}

interface PlannedOp {
  readonly name: string;
  run(guest: TdGuest, vcpu: number): Promise<string>;
}

/** A seeded operation: a conversion of a range of the window, or an access to a hot page. */
function plan(rng: SeededRng, _vcpu: number): PlannedOp {
  const choice = rng.int(0, 9);
  if (choice < 3) {
    const gpa = HOT[rng.int(0, HOT.length - 1)] as number;
    const write = rng.chance(0.5);
    return {
      name: `${write ? 'write' : 'read'} 0x${gpa.toString(16)}`,
      run: async (guest, vcpu) => {
        const result = write
          ? await guest.write(gpa, new Uint8Array([vcpu + 1]), { vcpu })
          : await guest.read(gpa, 1, { vcpu });
        return result.kind === 'ok' ? 'ok' : result.reason;
      },
    };
  }
  const toShared = choice < 7;
  const first = rng.int(0, WINDOW.pages - 1);
  const pages = Math.min(WINDOW.pages - first, rng.chance(0.2) ? rng.int(256, 600) : rng.int(1, 24));
  const start = WINDOW.start + first * PAGE;
  return {
    name: `${toShared ? 'to shared' : 'to private'} 0x${start.toString(16)}+${pages}p`,
    run: async (guest, vcpu) => {
      if (guest.ledger.runs({ start, end: start + pages * PAGE }).some((r) => r.state === 'quarantined'))
        return 'skipped (quarantined)';
      const result = toShared
        ? await guest.setShared(start, pages * PAGE, { vcpu })
        : await guest.setPrivate(start, pages * PAGE, { vcpu });
      return result.kind;
    },
  };
}

/**
 * A page accepted twice: two TDG.MEM.PAGE.ACCEPT SUCCESSes on it with no successful TDH.MEM.PAGE.REMOVE of it in
 * between (reading the trace in order).
 */
export function acceptedTwice(events: readonly TraceEvent[]): string[] {
  const accepted = new RangeMap<boolean>();
  const found: string[] = [];
  const span = (rcx: bigint) => {
    const { gpa, level } = decodePageInfo(rcx);
    return { start: gpa, end: gpa + PAGE * 512 ** level };
  };
  for (const event of events) {
    if (event.kind === 'tdcall' && event.leaf === 'TDG.MEM.PAGE.ACCEPT' && event.status === 0n) {
      const { start, end } = span(event.args.rcx as bigint);
      for (const run of accepted.runs(start, end))
        if (run.value === true)
          found.push(`accepted twice: 0x${run.start.toString(16)}..0x${run.end.toString(16)}`);
      accepted.set(start, end, true);
    }
    if (event.kind === 'seamcall' && event.leaf === 'TDH.MEM.PAGE.REMOVE' && event.status === 0n) {
      const { start, end } = span(event.args.rcx as bigint);
      accepted.set(start, end, false);
    }
  }
  return found;
}
