import { type ConversionResult, type GuestPresetName, TdGuest } from '@tdxsim/guest';
import { type BuildTdOptions, composeTd } from '@tdxsim/tdx-module';
import { TestkitError } from '../errors.js';
import { testkitLogger } from '../log.js';
import { type BackendSource, toVmmModule } from './backend-source.js';
import { backendViewEvidence } from './backend-view-rule.js';
import { CONFORMANCE_RULES, type ConformanceCheck } from './conformance-rules.js';
import { MapGpaObserver } from './map-gpa-observer.js';

const log = testkitLogger('conformance');
const PAGE = 4096;
const MIB = 2 ** 20;

export interface ConformanceOptions {
  /** The guests that run the workloads (default `['strict', 'linux']`). */
  readonly guests?: readonly GuestPresetName[];
  /** RETRYs without progress allowed in a row (default 2: Linux fails on the 3rd, reference guest-and-vmm.md §2.1). */
  readonly maxNoProgressRetries?: number;
  /** How the TD is built (default: GPAW 48, one vCPU). */
  readonly build?: BuildTdOptions;
  /** Seed of the simulation (default 1). */
  readonly seed?: number;
}

const WORKLOAD_STOPPED = Symbol('workload stopped');

/** Guest RAM of every workload TD: room for 2M pages and conversions that cross a 2M boundary. */
const RAM_BYTES = 8 * MIB;

interface Workload {
  readonly name: string;
  run(
    guest: TdGuest,
    step: (what: string, outcome: Promise<ConversionResult | AcceptResult>) => Promise<void>,
  ): Promise<void>;
}
type AcceptResult = Awaited<ReturnType<TdGuest['acceptAll']>>;

/** The workloads every backend must carry the guests through. */
const WORKLOADS: readonly Workload[] = [
  {
    name: 'to shared and back',
    async run(guest, step) {
      await step('4 MiB to shared', guest.setShared(2 * MIB, 4 * MIB));
      await step('4 MiB back to private', guest.setPrivate(2 * MIB, 4 * MIB));
    },
  },
  {
    name: 'accept',
    async run(guest, step) {
      await step('accept all 8 MiB', guest.acceptAll());
    },
  },
  {
    name: 'small DMA-like conversions',
    async run(guest, step) {
      await step('accept all 8 MiB', guest.acceptAll());
      await step('2 pages across a 2M boundary to shared', guest.setShared(2 * MIB - PAGE, 2 * PAGE));
      await step('and back', guest.setPrivate(2 * MIB - PAGE, 2 * PAGE));
      await step('1 page to shared', guest.setShared(5 * MIB + 3 * PAGE, PAGE));
      await step('and back', guest.setPrivate(5 * MIB + 3 * PAGE, PAGE));
      await step('4 pages to shared', guest.setShared(6 * MIB, 4 * PAGE));
      await step('and back', guest.setPrivate(6 * MIB, 4 * PAGE));
    },
  },
];

function describeFailure(result: ConversionResult | AcceptResult): string | undefined {
  if (result.kind === 'ok') return undefined;
  if ('statusText' in result)
    return `accept failed at 0x${result.acceptedEnd.toString(16)}: ${result.statusText}`;
  if (!('failure' in result)) return 'failed';
  const failure = result.failure;
  return failure.step === 'map-gpa'
    ? `MapGPA failed (${failure.failure.kind}) after ${result.mapGpaCalls} calls`
    : `accept failed: ${failure.failure.statusText}`;
}

/**
 * The conformance suite of a VMM backend: runs the workloads with each guest on a fresh TD, observing the backend
 * only through the trace sink (it sees nothing but its ordinary `Vmm` port), and returns one verdict per rule of
 * {@link CONFORMANCE_RULES}. Never throws for what the backend does; a backend that throws fails
 * `guest-conversions-complete` with the error.
 */
export async function runConformance(
  backend: BackendSource,
  options: ConformanceOptions = {},
): Promise<ConformanceCheck[]> {
  const vmm = toVmmModule(backend);
  const maxNoProgress = options.maxNoProgressRetries ?? 2;
  if (!Number.isSafeInteger(maxNoProgress) || maxNoProgress < 0)
    throw new TestkitError(
      'INVALID_OPTION',
      `maxNoProgressRetries must be a non-negative integer`,
      'maxNoProgressRetries',
    );
  const observer = new MapGpaObserver(maxNoProgress);
  const build: BuildTdOptions = { gpaw: 48, vcpus: 1, ...options.build };
  for (const preset of options.guests ?? ['strict', 'linux']) {
    for (const workload of WORKLOADS) {
      const label = `guest ${preset}, workload "${workload.name}"`;
      try {
        const { module, td, hosted } = await composeTd({
          vmm,
          build,
          sim: {
            seed: options.seed ?? 1,
            trace: observer,
            // A backend that stops answering must not hang the suite: a parked guest then fails its TDCALL.
            module: { tdmr: { base: 2 ** 34, size: 2 ** 30 }, abandonedVcpuTurns: 20_000 },
          },
        });
        observer.attach({ module, tdr: td.tdr, gpaw: td.gpaw, ramBytes: RAM_BYTES, label });
        const guest = await TdGuest.boot(td.guest(0), { memoryBytes: RAM_BYTES, policy: preset });
        await workload.run(guest, async (what, outcome) => {
          const failure = describeFailure(await outcome);
          observer.checkInvariants(`after "${what}" (${label})`);
          for (const line of backendViewEvidence(hosted.vmm, module, td.tdr, `after "${what}" (${label})`))
            observer.report('backend-view-matches', line);
          if (failure === undefined) return;
          observer.report('guest-conversions-complete', `${what}: ${failure} (${label})`);
          // The rest of the workload would only meet the quarantine this failure left.
          throw WORKLOAD_STOPPED;
        });
      } catch (error) {
        if (error === WORKLOAD_STOPPED) continue;
        log('%s: threw %o', label, error);
        observer.report('guest-conversions-complete', `threw ${String(error)} (${label})`);
      }
    }
  }
  const observed = `${observer.mapGpaReplies} MapGPA replies and ${observer.seamcalls} SEAMCALLs observed`;
  return CONFORMANCE_RULES.map(({ id, title }) => {
    const evidence = observer.evidence.get(id) ?? [];
    if (evidence.length === 0) return { rule: id, title, passed: true, message: `${id}: ok (${observed})` };
    const shown = evidence.slice(0, 3).join('; ');
    const more = evidence.length > 3 ? `; and ${evidence.length - 3} more` : '';
    return { rule: id, title, passed: false, message: `${id} broken (${title}): ${shown}${more}` };
  });
}
