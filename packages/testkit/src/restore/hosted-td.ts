import {
  type BuildTdOptions,
  checkpointTd,
  type HostedTd,
  TdxModule,
  type TdxModuleOptions,
  type VmmFactory,
} from '@tdxsim/tdx-module';
import type { ExploreContext } from '../explore/explore-types.js';
import { testkitLogger } from '../log.js';
import { type AdoptedCheckpoint, type AdoptingVmmFactory, canAdopt } from './adopting-vmm-factory.js';
import { type RecordedBuild, recordBuild, replayBuild } from './recorded-build.js';

const log = testkitLogger('restore');

/** One TD built by a factory and checkpointed, what its build showed, and the factory's adoption of it. */
interface Template {
  readonly adopted: AdoptedCheckpoint;
  readonly recorded: RecordedBuild;
}

/**
 * Per adopting factory, per shape (module options and build options as JSON): the template, or undefined when none
 * can be made (the build or the adoption failed: each run then builds, and reports what goes wrong).
 */
const templates = new WeakMap<AdoptingVmmFactory, Map<string, Promise<Template | undefined>>>();

/** The JSON key of a shape, or undefined for one that is not plain data (an initial image: built every time). */
function shapeKey(options: TdxModuleOptions, build: BuildTdOptions): string | undefined {
  if (build.initialImage !== undefined) return undefined;
  try {
    return JSON.stringify([options, build], (_key, value: unknown) => {
      if (typeof value === 'bigint') return `${value}n`;
      if (typeof value === 'function' || typeof value === 'symbol') throw new Error('not plain data');
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) throw new Error('not plain data');
      }
      return value;
    });
  } catch {
    return undefined;
  }
}

async function makeTemplate(
  backend: AdoptingVmmFactory,
  options: TdxModuleOptions,
  build: BuildTdOptions,
): Promise<Template | undefined> {
  try {
    const { module, built, recorded } = await recordBuild(options, (m) => backend(m, build));
    const adopted = await backend.adoptCheckpoint(checkpointTd(module, built.td));
    return { adopted, recorded };
  } catch (error) {
    log('no restorable TD for this backend and shape (each run builds its own): %s', String(error));
    return undefined;
  }
}

/**
 * A module made with `options` and the TD `backend` built on it with `build`, for one run of an exploration: the
 * module uses the run's scheduler and trace (`ctx.services`), the host threads are not started (`hosted.run()`).
 *
 * With an {@link AdoptingVmmFactory} the TD is built once per factory and shape, checkpointed before any vCPU runs,
 * and every run gets a restore of it taken over by the factory's adoption — with what the build showed the run
 * given again in the build's order (its trace events into `ctx.trace`, its yield points through the run's
 * scheduler), so that a run has the schedule, the trace and the report a build gives it. With any other factory, a
 * shape that is not plain data (an initial image) or a factory whose build or adoption failed once, each run builds.
 */
export async function exploredHostedTd(
  ctx: Pick<ExploreContext, 'services' | 'trace'>,
  backend: VmmFactory,
  options: TdxModuleOptions,
  build: BuildTdOptions,
): Promise<{ readonly module: TdxModule; readonly hosted: HostedTd }> {
  const template = canAdopt(backend) ? await templateOf(backend, options, build) : undefined;
  if (template === undefined) {
    const module = new TdxModule(options, ctx.services);
    return { module, hosted: await backend(module, build) };
  }
  const { module, td, vmm } = template.adopted.restore(ctx.services);
  await replayBuild(module, ctx.trace, template.recorded);
  return { module, hosted: { vmm, td, run: () => vmm.run() } };
}

function templateOf(
  backend: AdoptingVmmFactory,
  options: TdxModuleOptions,
  build: BuildTdOptions,
): Promise<Template | undefined> | undefined {
  const key = shapeKey(options, build);
  if (key === undefined) return undefined;
  let shapes = templates.get(backend);
  if (shapes === undefined) {
    shapes = new Map();
    templates.set(backend, shapes);
  }
  let template = shapes.get(key);
  if (template === undefined) {
    template = makeTemplate(backend, options, build);
    shapes.set(key, template);
  }
  return template;
}
