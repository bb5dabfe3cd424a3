import { HypervVmm, type HypervVmmOptions } from '@tdxsim/host-hyperv';
import { KvmVmm, type KvmVmmOptions } from '@tdxsim/host-kvm';
import { type BuiltTd, buildTd, checkpointTd, type TdCheckpoint, type TdxModule } from '@tdxsim/tdx-module';
import type { ExploreContext } from '../explore/explore-types.js';
import { type RecordedBuild, recordBuild, replayBuild } from '../restore/recorded-build.js';

/** The backend that takes a restored case TD over, and its options. */
export type CaseBackend =
  | { readonly backend: 'kvm'; readonly options: KvmVmmOptions }
  | { readonly backend: 'hyperv'; readonly options: HypervVmmOptions };

/**
 * One built TD of a given shape, checkpointed, with what its build showed the explorer (see {@link recordBuild}).
 * Each backend adopts the checkpoint once.
 */
interface CaseTemplate {
  readonly checkpoint: TdCheckpoint;
  readonly kvm: Awaited<ReturnType<typeof KvmVmm.adoptCheckpoint>>;
  readonly hyperv: Awaited<ReturnType<typeof HypervVmm.adoptCheckpoint>>;
  readonly recorded: RecordedBuild;
}

/** By vCPU count and TDMR: a case TD has GPAW 48 and one vCPU per plan. */
const templates = new Map<string, Promise<CaseTemplate>>();

async function makeTemplate(vcpus: number, tdmr: { base: number; size: number }): Promise<CaseTemplate> {
  // KvmVmm.create and HypervVmm.create build with buildTd(skipFinalize) then TDH.MR.FINALIZE: the same SEAMCALLs.
  const { module, built: td, recorded } = await recordBuild({ tdmr }, (m) => buildTd(m, { gpaw: 48, vcpus }));
  const checkpoint = checkpointTd(module, td);
  return {
    checkpoint,
    kvm: await KvmVmm.adoptCheckpoint(checkpoint),
    hyperv: await HypervVmm.adoptCheckpoint(checkpoint),
    recorded,
  };
}

/** The template of a case TD's shape, made on first use. */
function templateOf(vcpus: number, tdmr: { base: number; size: number }): Promise<CaseTemplate> {
  const key = `${vcpus}@${tdmr.base}+${tdmr.size}`;
  let template = templates.get(key);
  if (template === undefined) {
    template = makeTemplate(vcpus, tdmr);
    // A template that failed is not remembered: the next case tries again (and reports its error).
    template.catch(() => templates.delete(key));
    templates.set(key, template);
  }
  return template;
}

/** The checkpoint the cases of a shape restore (tests: whatever the cases do must never change it). */
export async function concurrentCaseCheckpoint(
  vcpus: number,
  tdmr: { base: number; size: number },
): Promise<TdCheckpoint> {
  return (await templateOf(vcpus, tdmr)).checkpoint;
}

/**
 * The TD of a concurrent case without a build: a checkpoint of one built TD of `vcpus` vCPUs (taken once per shape)
 * restored with the explorer's services and taken over by the case's backend. What the explorer saw of the build is
 * given to it again ({@link replayBuild}: the trace events and the yield points, in the build's order, each point a
 * copy of its own), so a case has the schedule and the report a build gives it.
 */
export async function concurrentCaseTd(
  vcpus: number,
  tdmr: { base: number; size: number },
  ctx: ExploreContext,
  backend: CaseBackend,
): Promise<{ readonly module: TdxModule; readonly td: BuiltTd; readonly vmm: KvmVmm | HypervVmm }> {
  const { kvm, hyperv, recorded } = await templateOf(vcpus, tdmr);
  const services = { scheduler: ctx.scheduler, trace: ctx.trace };
  const restored =
    backend.backend === 'kvm'
      ? kvm.restore(services, backend.options)
      : hyperv.restore(services, backend.options);
  await replayBuild(restored.module, ctx.trace, recorded);
  return restored;
}
