import type { GuestRowOptions } from '../guests/guest-row.js';
import type { ScenarioDetail, ScenarioResult, ScenarioSpec } from '../scenario/scenario-result.js';

/** Main thread → worker: run one scenario. */
export interface RunRequest {
  readonly index: number;
  readonly spec: ScenarioSpec;
  readonly checkEvery: number | undefined;
  readonly fuse: number | undefined;
  readonly timeoutMs: number | undefined;
  readonly traceDir: string | undefined;
  readonly vcpus: number | undefined;
  readonly scheduler: 'random' | 'pct' | undefined;
  readonly scheduleSeed: number | undefined;
}

/** Worker → main thread. */
export type WorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'setup-failed'; readonly message: string }
  | { readonly type: 'progress'; readonly index: number; readonly done: number; readonly total: number }
  | {
      readonly type: 'done';
      readonly index: number;
      readonly result: ScenarioResult;
      readonly detail: ScenarioDetail;
      /** The backend left timers running in this thread: the worker is replaced before the next scenario. */
      readonly tainted: boolean;
      /**
       * Set by a worker thread: nothing is active in it beyond what it held once its catalog was loaded (no timer, socket,
       * watcher, child process or thread left by any scenario so far), so it may be kept for a later run.
       */
      readonly idle?: boolean;
      /**
       * Set by a worker thread: ms its event loop waited since it sent its previous result (or said it was ready),
       * i.e. for this request to come and, within the scenario, for another thread (a wasm guest's). Logged per
       * worker at the end of a run (`DEBUG=tdxsim:cli:matrix`): whether the workers were kept busy.
       */
      readonly waitedMs?: number;
      /**
       * Set by a worker thread on Linux: CPU ms its own thread spent from receiving the request to this result (the
       * scenario, its set-up and judging; not V8's helper threads). Logged per scenario and per worker
       * (`DEBUG=tdxsim:cli:matrix`): what a worker's first scenarios cost against warm ones.
       */
      readonly cpuMs?: number;
    };

/** What a worker is started with: the files it loads once, before its first scenario. */
export interface WorkerSetup {
  readonly backendFiles: readonly string[];
  /** The wasm guests of the matrix's rows (`--guest`), each compiled once per worker. */
  readonly guestFiles: readonly string[];
  /** The options the rows were loaded with (`--guest-timeout`), the same for every row. */
  readonly guestOptions: GuestRowOptions;
}
