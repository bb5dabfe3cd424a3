import {
  TdxModule as Module,
  type Scheduler,
  type TdxModule,
  type TdxModuleOptions,
  type TraceEvent,
  type TraceSink,
  type YieldPoint,
} from '@tdxsim/tdx-module';

/**
 * A trace sink and a scheduler in one: keeps every event, lets every flow go on at once and records where it could
 * have switched threads, with how many events came before each point.
 */
class BuildRecorder implements Scheduler, TraceSink {
  readonly enabled = true;
  readonly events: TraceEvent[] = [];
  readonly points: YieldPoint[] = [];
  readonly eventsBefore: number[] = [];
  record(event: TraceEvent): void {
    this.events.push(event);
  }
  yieldAt(point: YieldPoint): undefined {
    this.points.push(point);
    this.eventsBefore.push(this.events.length);
    return undefined;
  }
}

/**
 * What a TD's build showed an explorer: the yield points its SEAMCALLs passed (in order) and the trace events they
 * recorded. A restore of the built TD gives them to the run's scheduler and trace with {@link replayBuild}.
 */
export interface RecordedBuild {
  readonly points: readonly YieldPoint[];
  /** For each point, how many of `events` the build had recorded when it reached it. */
  readonly eventsBefore: readonly number[];
  readonly events: readonly TraceEvent[];
}

/**
 * Builds with `build` on a new module made with `options`, under a scheduler that records every yield point instead
 * of deciding anything (the build is one thread: there is nothing to decide), and a trace sink that keeps every event.
 * Returns the module, what `build` gave and what the build showed. Take the checkpoint from it before any vCPU runs.
 */
export async function recordBuild<B>(
  options: TdxModuleOptions,
  build: (module: TdxModule) => Promise<B>,
): Promise<{ readonly module: TdxModule; readonly built: B; readonly recorded: RecordedBuild }> {
  const recorder = new BuildRecorder();
  const module = new Module(options, { scheduler: recorder, trace: recorder });
  const built = await build(module);
  const { points, eventsBefore, events } = recorder;
  return { module, built, recorded: { points, eventsBefore, events } };
}

/**
 * Shows the run of a restored TD what its build would have shown, in the build's order: its trace events recorded
 * into `trace`, and each yield point passed through `module` (each a step of the run's schedule: with one thread
 * there is no choice, but PCT's change points, the step budget and the schedule's signature count them). Each point is
 * passed as a copy of its own, so no run holds an object another run's scheduler held (a scheduler keeps the points
 * of its steps). A rejection (the scheduler stopped the run) propagates, as it would from the build's SEAMCALL, with
 * the events up to that point recorded.
 */
export async function replayBuild(
  module: TdxModule,
  trace: TraceSink,
  recorded: RecordedBuild,
): Promise<void> {
  const { points, eventsBefore, events } = recorded;
  let recordedUpTo = 0;
  const recordUpTo = (end: number): void => {
    if (trace.enabled) for (let i = recordedUpTo; i < end; i++) trace.record(events[i] as TraceEvent);
    recordedUpTo = end;
  };
  for (let i = 0; i < points.length; i++) {
    recordUpTo(eventsBefore[i] as number);
    const wait = module.yieldAt({ ...(points[i] as YieldPoint) });
    if (wait !== undefined) await wait;
  }
  recordUpTo(events.length);
}
