/**
 * @tdxsim/testkit/vitest: the testkit's helpers that register vitest tests. Import from here in a vitest suite; the
 * main entry (`@tdxsim/testkit`) never imports vitest.
 */
import { relative } from 'node:path';
import { type BackendSource, backendName } from '@tdxsim/tdx-module';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkConformanceArguments } from './conformance/conformance-options.js';
import { CONFORMANCE_RULES, type ConformanceCheck } from './conformance/conformance-rules.js';
import { type ConformanceOptions, runConformance } from './conformance/run-conformance.js';
import { TestkitError } from './errors.js';
import { exploreSchedules, replaySchedule, validate } from './explore/explore-schedules.js';
import {
  EXPLORE_FAILURE_KINDS,
  type ExploredTd,
  type ExploreFailureKind,
  type ExploreOptions,
} from './explore/explore-types.js';
import { formatExploreFailure } from './explore/format-report.js';
import { assertString } from './validation.js';

/**
 * Options of {@link vmmConformance}: those of {@link runConformance} and the name of the `describe` block.
 */
export interface VmmConformanceOptions extends ConformanceOptions {
  /** The describe block's name (default: the backend's class or function name). */
  readonly name?: string;
}

/**
 * Registers the conformance suite of a VMM backend: one `describe` named after the backend and one test per rule of
 * {@link CONFORMANCE_RULES}, each failing with the message that names the broken rule and its evidence. The
 * workloads run once, before the tests.
 *
 * ```ts
 * import { vmmConformance } from '@tdxsim/testkit/vitest';
 * vmmConformance(MyVmm); // a Vmm class, a VmmFactory, or a ContainerModule such as kvmVmm()
 * ```
 */
export function vmmConformance(backend: BackendSource, options: VmmConformanceOptions = {}): void {
  // Checked here, at registration, so that a bad argument fails the file at once rather than in a beforeAll hook.
  checkConformanceArguments('vmmConformance', backend, options, ['name']);
  if (options.name !== undefined) assertString('name', options.name, 'INVALID_OPTION');
  const { name, ...conformance } = options;
  describe(`VMM conformance: ${name ?? backendName(backend)}`, () => {
    let checks: ConformanceCheck[] = [];
    // Every workload of `tdxsim run` on two TD shapes with two guests: seconds, not the default hook timeout.
    beforeAll(async () => {
      checks = await runConformance(backend, conformance);
    }, 300_000);
    for (const rule of CONFORMANCE_RULES) {
      it(`${rule.id}: ${rule.title}`, () => {
        const check = checks.find((c) => c.rule === rule.id);
        expect(check, `no verdict for ${rule.id}`).toBeDefined();
        expect(check?.passed, check?.message).toBe(true);
      });
    }
  });
}

/** Options of {@link exploreTest}: an exploration's, and what the test expects of it. */
export interface ExploreTestOptions<T extends ExploredTd = ExploredTd> extends ExploreOptions<T> {
  /** The exploration must find a failure of this kind (a test that keeps a known-buggy backend caught). */
  readonly expectFailure?: ExploreFailureKind;
  /**
   * The test's timeout in ms. Default: `minutes` plus a minute; else {@link EXPLORE_TEST_TIMEOUT_MS} (10 minutes), not
   * vitest's default, so that a race found late is reported with its schedule, not as a timeout.
   */
  readonly timeout?: number;
}

/** The timeout of an {@link exploreTest} given neither `timeout` nor `minutes`: 10 minutes. */
export const EXPLORE_TEST_TIMEOUT_MS = 600_000;

/** Environment variable that makes every {@link exploreTest} it selects replay one schedule instead of exploring. */
export const REPLAY_ENV = 'TDXSIM_SCHEDULE';

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

/**
 * Registers an exploration as a vitest test: it runs {@link exploreSchedules} and fails with the shrunk schedule, the
 * choices that made it, the end of its trace and a one-line replay command. With `TDXSIM_SCHEDULE=<schedule>` in the
 * environment the test replays that schedule instead (printing its trace) and fails if it fails. Progress of long
 * explorations is printed every 10 s.
 *
 * ```ts
 * import { exploreTest } from '@tdxsim/testkit/vitest';
 * exploreTest('my backend survives a fault racing a zap', { scenario: faultRacingZap(myFactory), schedules: 200 });
 * ```
 */
export function exploreTest<T extends ExploredTd>(name: string, options: ExploreTestOptions<T>): void {
  if (typeof name !== 'string' || name.length === 0)
    throw new TestkitError('INVALID_ARGUMENT', 'name must be a non-empty string', 'name');
  if (typeof options !== 'object' || options === null)
    throw new TestkitError('INVALID_OPTION', 'options must be an object', 'options');
  const { expectFailure, timeout, ...explore } = options;
  // The exploration's options are checked now, when the test is registered, not when it runs.
  validate(explore as never);
  if (expectFailure !== undefined && !(EXPLORE_FAILURE_KINDS as readonly unknown[]).includes(expectFailure))
    throw new TestkitError(
      'INVALID_OPTION',
      `expectFailure must be one of ${EXPLORE_FAILURE_KINDS.join(', ')}, got ${String(expectFailure)}`,
      'expectFailure',
    );
  if (timeout !== undefined && !(typeof timeout === 'number' && Number.isSafeInteger(timeout) && timeout > 0))
    throw new TestkitError(
      'INVALID_OPTION',
      `timeout must be a positive integer (ms), got ${String(timeout)}`,
      'timeout',
    );
  const budget =
    timeout ?? (explore.minutes === undefined ? EXPLORE_TEST_TIMEOUT_MS : explore.minutes * 60_000 + 60_000);
  it(
    name,
    async () => {
      const testPath = expect.getState().testPath;
      const file = testPath === undefined ? '<test file>' : relative(process.cwd(), testPath);
      const pattern = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const replayCommand = (schedule: string): string =>
        `${REPLAY_ENV}=${shellQuote(schedule)} npx vitest run ${file} -t ${shellQuote(pattern)}`;
      const forced = process.env[REPLAY_ENV];
      if (forced !== undefined && forced !== '') {
        const replay = await replaySchedule({ ...explore, schedule: forced });
        console.log(`replay of ${replay.schedule} (${name}):\n${replay.traceText}`);
        // A stale schedule replays something else than what was recorded: the test says so rather than pass on it.
        if (replay.divergence !== undefined)
          throw new Error(`${REPLAY_ENV}=${forced} is stale: ${replay.divergence}`);
        if (expectFailure !== undefined) expect(replay.failure?.kind).toBe(expectFailure);
        else if (replay.failure !== undefined)
          throw new Error(
            `replay of ${replay.schedule} failed: ${replay.failure.kind}: ${replay.failure.message}`,
          );
        return;
      }
      let printed = performance.now();
      const result = await exploreSchedules({
        ...explore,
        replayCommand,
        onProgress: (progress) => {
          explore.onProgress?.(progress);
          if (performance.now() - printed < 10_000) return;
          printed = performance.now();
          console.log(
            `${name}: ${progress.schedulesRun} schedules, ${progress.distinctInterleavings} distinct interleavings, ${Math.round(progress.elapsedMs / 1000)} s`,
          );
        },
      });
      const report =
        result.failure === undefined ? 'no failure' : formatExploreFailure(result, result.failure);
      if (expectFailure !== undefined) {
        expect(result.failure?.kind, report).toBe(expectFailure);
        return;
      }
      if (result.failure !== undefined) throw new Error(report);
    },
    budget,
  );
}
