import type { ScenarioDetail, ScenarioResult, ScenarioSpec } from '../scenario/scenario-result.js';

/** Main thread → worker: run one scenario. */
export interface RunRequest {
  readonly index: number;
  readonly spec: ScenarioSpec;
  readonly checkEvery: number | undefined;
  readonly fuse: number | undefined;
  readonly detail: boolean;
}

/** Worker → main thread. */
export type WorkerMessage =
  | { readonly type: 'progress'; readonly index: number; readonly done: number; readonly total: number }
  | {
      readonly type: 'done';
      readonly index: number;
      readonly result: ScenarioResult;
      readonly detail: ScenarioDetail | undefined;
    };

/** What a worker is started with. */
export interface WorkerSetup {
  readonly backendFiles: readonly string[];
}
