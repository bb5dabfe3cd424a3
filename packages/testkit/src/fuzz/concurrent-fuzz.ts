import { type GuestPresetName, TdGuest } from '@tdxsim/guest';
import { hypervVmm } from '@tdxsim/host-hyperv';
import { kvmVmm } from '@tdxsim/host-kvm';
import { type BackendSource, composeTd, type TdxModule, type Vmm } from '@tdxsim/tdx-module';
import fc from 'fast-check';
import { kvmWithoutMmuLock } from '../backends/buggy/kvm-without-mmu-lock.js';
import { TestkitError } from '../errors.js';
import { exploreSchedules } from '../explore/explore-schedules.js';
import type { ExploreContext, ExploreFailureKind, ExploreResult } from '../explore/explore-types.js';
import { concurrentCaseTd } from './concurrent-case-td.js';

const PAGE = 4096;

/**
 * The backends a concurrent fuzz case runs against: the real ones (`kvm`, `hyperv`) and, to show that a campaign
 * finds what it should, the buggy catalogue's `kvm-without-mmu-lock`.
 */
export const CONCURRENT_FUZZ_BACKENDS = ['kvm', 'hyperv', 'kvm-without-mmu-lock'] as const;

/** A name of {@link CONCURRENT_FUZZ_BACKENDS}. */
export type ConcurrentFuzzBackend = (typeof CONCURRENT_FUZZ_BACKENDS)[number];

/** What one vCPU does in a concurrent fuzz case: a conversion of pages of the guest's RAM, or an access to one. */
export interface ConcurrentFuzzStep {
  readonly op: 'to-shared' | 'to-private' | 'read' | 'write';
  /** First page (of the guest's RAM). */
  readonly page: number;
  /** Pages converted (1 for an access). */
  readonly pages: number;
}

/**
 * One generated concurrent case: a backend, a guest preset, a TD of 2 to 4 vCPUs served by one guest, a list of steps
 * per vCPU (run by all vCPUs at once, over the same pages), and the schedule that interleaves them (the scheduler and
 * its seed).
 */
export interface ConcurrentFuzzCase {
  readonly kind: 'concurrent';
  readonly backend: ConcurrentFuzzBackend;
  readonly guest: GuestPresetName;
  readonly memoryPages: number;
  readonly plans: readonly (readonly ConcurrentFuzzStep[])[];
  readonly scheduler: 'random' | 'pct';
  readonly scheduleSeed: number;
}

/** What running one concurrent case found: safe, or the first check it broke (kind and message) and what ran. */
export interface ConcurrentFuzzReport {
  readonly safe: boolean;
  readonly failure?: { readonly kind: ExploreFailureKind; readonly message: string };
  /** One line per step: `vcpu1 to-shared 3+2: ok`. */
  readonly outcomes: readonly string[];
}

/**
 * The RAM a case's guest has: three 2M regions (6 MiB), so that faults link new S-EPT tables while other vCPUs
 * convert. Steps touch the first {@link HOT_PAGES} pages of a region, so that the vCPUs' ranges overlap often.
 */
const MEMORY_PAGES = 3 * 512;
const HOT_PAGES = 24;

/**
 * The arbitrary of concurrent cases over `backends` and `presets`: 2 to 4 vCPUs, 1 to 4 steps each over the first
 * pages of three 2M regions, either scheduler, any 32-bit schedule seed.
 */
export function concurrentFuzzCase(
  presets: readonly GuestPresetName[],
  backends: readonly ConcurrentFuzzBackend[] = ['kvm', 'hyperv'],
): fc.Arbitrary<ConcurrentFuzzCase> {
  if (backends.length === 0)
    throw new TestkitError('INVALID_OPTION', 'backends must not be empty', 'backends');
  for (const backend of backends)
    if (!(CONCURRENT_FUZZ_BACKENDS as readonly string[]).includes(backend))
      throw new TestkitError(
        'INVALID_OPTION',
        `unknown backend ${JSON.stringify(backend)} (valid: ${CONCURRENT_FUZZ_BACKENDS.join(', ')})`,
        'backends',
      );
  if (presets.length === 0) throw new TestkitError('INVALID_OPTION', 'presets must not be empty', 'presets');
  const step: fc.Arbitrary<ConcurrentFuzzStep> = fc
    .record({
      op: fc.constantFrom('to-shared' as const, 'to-private' as const, 'read' as const, 'write' as const),
      region: fc.integer({ min: 0, max: MEMORY_PAGES / 512 - 1 }),
      offset: fc.integer({ min: 0, max: HOT_PAGES - 1 }),
      pages: fc.integer({ min: 1, max: 8 }),
    })
    .map(({ op, region, offset, pages }) => ({
      op,
      page: region * 512 + offset,
      pages: op === 'read' || op === 'write' ? 1 : pages,
    }));
  return fc.record({
    kind: fc.constant('concurrent' as const),
    backend: fc.constantFrom(...backends),
    guest: fc.constantFrom(...presets),
    memoryPages: fc.constant(MEMORY_PAGES),
    plans: fc.array(fc.array(step, { minLength: 1, maxLength: 4 }), { minLength: 2, maxLength: 4 }),
    scheduler: fc.constantFrom('random' as const, 'pct' as const),
    scheduleSeed: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  });
}

function backendOf(name: ConcurrentFuzzBackend, seed: number): BackendSource {
  if (name === 'kvm') return kvmVmm({ seed });
  if (name === 'hyperv') return hypervVmm({ seed, chunkPages: 4 });
  return kvmWithoutMmuLock.module();
}

/** Whether `value` is a {@link ConcurrentFuzzCase} (as `--replay` reads one back from its JSON). */
export function isConcurrentFuzzCase(value: unknown): value is ConcurrentFuzzCase {
  const c = value as Partial<ConcurrentFuzzCase>;
  return (
    typeof c === 'object' &&
    c !== null &&
    c.kind === 'concurrent' &&
    (CONCURRENT_FUZZ_BACKENDS as readonly unknown[]).includes(c.backend) &&
    typeof c.guest === 'string' &&
    Number.isSafeInteger(c.memoryPages) &&
    (c.memoryPages as number) > 0 &&
    (c.scheduler === 'random' || c.scheduler === 'pct') &&
    Number.isSafeInteger(c.scheduleSeed) &&
    Array.isArray(c.plans) &&
    c.plans.length >= 1 &&
    c.plans.length <= 8 &&
    c.plans.every(
      (plan) =>
        Array.isArray(plan) &&
        plan.every(
          (s: Partial<ConcurrentFuzzStep>) =>
            ['to-shared', 'to-private', 'read', 'write'].includes(s.op as string) &&
            Number.isSafeInteger(s.page) &&
            Number.isSafeInteger(s.pages) &&
            (s.page as number) >= 0 &&
            (s.pages as number) >= 1 &&
            (s.page as number) + (s.pages as number) <= (c.memoryPages as number),
        ),
    )
  );
}

/**
 * Runs one concurrent case: builds the TD on its backend with one vCPU per plan and one guest serving them all, runs
 * every plan at once under the case's schedule (one schedule of `exploreSchedules`, no shrinking: fast-check shrinks
 * the case), and checks at quiescence what the explorer checks — module invariants, the backend's view against the
 * S-EPT, the guest's ledger against the module, the safety rules — and that no step threw.
 */
export async function runConcurrentFuzzCase(fuzz: ConcurrentFuzzCase): Promise<ConcurrentFuzzReport> {
  if (!isConcurrentFuzzCase(fuzz))
    throw new TestkitError('INVALID_ARGUMENT', 'not a concurrent fuzz case', 'fuzz');
  return (await runConcurrentCase(fuzz, 'restore')).report;
}

/**
 * How a concurrent case gets its TD: `restore` (campaigns, {@link runConcurrentFuzzCase}) restores a checkpoint of
 * the built TD that the case's backend adopted (`KvmVmm.adoptCheckpoint`, `HypervVmm.adoptCheckpoint`); `build` has
 * the backend build it (`composeTd`), as every case did before. Both give the same case the same schedule and report
 * (tested): the restore passes the yield points and records the trace events that the build would have.
 */
export type ConcurrentCaseSetUp = 'restore' | 'build';

/**
 * {@link runConcurrentFuzzCase} with the TD set up as `setUp` says, with the exploration's result (steps, the failing
 * schedule and its trace); the case is not checked again.
 */
export async function runConcurrentCase(
  fuzz: ConcurrentFuzzCase,
  setUp: ConcurrentCaseSetUp,
): Promise<{ readonly report: ConcurrentFuzzReport; readonly explored: ExploreResult }> {
  const outcomes: string[] = [];
  const result = await exploreSchedules({
    scheduler: fuzz.scheduler,
    seed: fuzz.scheduleSeed,
    schedules: 1,
    shrink: false,
    maxSteps: 200_000,
    scenario: async (ctx) => {
      outcomes.length = 0;
      const { module, tdr, vmm, cpus } = await (setUp === 'build'
        ? builtTd(fuzz, ctx)
        : restoredTd(fuzz, ctx));
      const guest = await TdGuest.boot(cpus, { memoryBytes: fuzz.memoryPages * PAGE, policy: fuzz.guest });
      const td = ctx.watch({ module, tdr, vmm, guests: [guest] });
      const threw: string[] = [];
      await Promise.all(
        fuzz.plans.map(async (plan, vcpu) => {
          for (const step of plan) {
            const at = step.page * PAGE;
            let outcome: string;
            try {
              outcome = await runStep(guest, vcpu, step, at);
            } catch (error) {
              outcome = `threw ${String(error)}`;
              threw.push(`vcpu${vcpu} ${step.op} ${step.page}+${step.pages}: ${String(error)}`);
            }
            outcomes.push(`vcpu${vcpu} ${step.op} ${step.page}+${step.pages}: ${outcome}`);
          }
        }),
      );
      return { ...td, threw };
    },
    property: ({ td }) => td.threw.length === 0 || `a step threw: ${td.threw.join('; ')}`,
  });
  if (result.failure === undefined) return { report: { safe: true, outcomes }, explored: result };
  const failure = { kind: result.failure.kind, message: result.failure.message };
  return { report: { safe: false, failure, outcomes }, explored: result };
}

/** A case's TD, running: its module, TDR, backend and the guest's view of each vCPU. */
interface CaseTd {
  readonly module: TdxModule;
  readonly tdr: number;
  readonly vmm: Vmm;
  readonly cpus: ReturnType<TdxModule['guestCpu']>[];
}

/** The TD built by the case's backend through the explorer's scheduler (composeTd). */
async function builtTd(fuzz: ConcurrentFuzzCase, ctx: ExploreContext): Promise<CaseTd> {
  const composed = await composeTd({
    vmm: backendOf(fuzz.backend, fuzz.scheduleSeed),
    build: { gpaw: 48, vcpus: fuzz.plans.length },
    sim: { ...ctx.sim, module: { tdmr: CASE_TDMR } },
  });
  const cpus = fuzz.plans.map((_, i) => composed.td.guest(i));
  return { module: composed.module, tdr: composed.td.tdr, vmm: composed.hosted.vmm, cpus };
}

/** The TD restored from the checkpoint of one built TD of as many vCPUs, taken over by the case's backend. */
async function restoredTd(fuzz: ConcurrentFuzzCase, ctx: ExploreContext): Promise<CaseTd> {
  const { module, td, vmm } = await concurrentCaseTd(
    fuzz.plans.length,
    CASE_TDMR,
    ctx,
    backendOptionsOf(fuzz),
  );
  const threads = vmm.run();
  // As composeTd does: a backend that throws on its host thread fails the guest, not the process.
  for (const thread of threads) thread.catch(() => {});
  const cpus = fuzz.plans.map((_, i) => td.guest(i));
  return { module, tdr: td.tdr, vmm, cpus };
}

/** The TDMR of a case's module. */
export const CASE_TDMR = { base: 2 ** 36, size: 2 ** 30 };

/** The backend of a case and its options, as {@link backendOf} makes it. */
function backendOptionsOf(fuzz: ConcurrentFuzzCase) {
  if (fuzz.backend === 'kvm') return { backend: 'kvm', options: { seed: fuzz.scheduleSeed } } as const;
  if (fuzz.backend === 'hyperv')
    return { backend: 'hyperv', options: { seed: fuzz.scheduleSeed, chunkPages: 4 } } as const;
  // kvmWithoutMmuLock's factory: KvmVmm.create(module, { mmuLock: 'none' }, build).
  return { backend: 'kvm', options: { mmuLock: 'none' } } as const;
}

async function runStep(guest: TdGuest, vcpu: number, step: ConcurrentFuzzStep, at: number): Promise<string> {
  if (step.op === 'read' || step.op === 'write') {
    const access =
      step.op === 'read'
        ? await guest.read(at, 8, { vcpu })
        : await guest.write(at, new Uint8Array([vcpu + 1]), { vcpu });
    return access.kind === 'ok' ? 'ok' : access.reason;
  }
  if (guest.ledger.runs({ start: at, end: at + step.pages * PAGE }).some((r) => r.state === 'quarantined'))
    return 'skipped (quarantined)';
  const done =
    step.op === 'to-shared'
      ? await guest.setShared(at, step.pages * PAGE, { vcpu })
      : await guest.setPrivate(at, step.pages * PAGE, { vcpu });
  return done.kind;
}
