import {
  assertArray,
  assertInteger,
  assertOneOf,
  assertOptions,
  assertString,
  show,
} from '../api-validation.js';
import { MAX_GUEST_CALL_TIMEOUT_MS } from '../guests/guest-row.js';
import { SCENARIO_SCHEDULERS } from '../scenario/scenario-concurrency.js';
import { UsageError } from '../usage-error.js';

const KNOWN = [
  'seed',
  'checkEvery',
  'fuse',
  'timeoutMs',
  'shard',
  'concurrency',
  'policies',
  'guests',
  'vmms',
  'workloads',
  'expectations',
  'results',
  'wallMs',
  'guests',
];

/** `buildRunReport`'s input: every field the report's schema needs, of its type. */
export function checkReportInput(input: unknown): void {
  assertOptions('buildRunReport', 'input', input, KNOWN, false);
  const o = input as Record<string, unknown>;
  assertInteger('seed', o.seed, Number.MIN_SAFE_INTEGER);
  if (o.checkEvery !== undefined) assertInteger('checkEvery', o.checkEvery, 1);
  assertInteger('fuse', o.fuse, 1);
  if (o.timeoutMs !== undefined) assertInteger('timeoutMs', o.timeoutMs, 0);
  if (o.shard !== undefined) {
    assertOptions('buildRunReport', 'shard', o.shard, ['index', 'total'], false);
    const { index, total } = o.shard as { index?: unknown; total?: unknown };
    assertInteger('shard.total', total, 1);
    assertInteger('shard.index', index, 1, total);
  }
  if (o.concurrency !== undefined) {
    assertOptions(
      'buildRunReport',
      'concurrency',
      o.concurrency,
      ['vcpus', 'scheduler', 'scheduleSeed'],
      false,
    );
    const { vcpus, scheduler, scheduleSeed } = o.concurrency as Record<string, unknown>;
    assertInteger('concurrency.vcpus', vcpus, 1, 64);
    if (scheduler !== null)
      assertOneOf('concurrency.scheduler', scheduler, SCENARIO_SCHEDULERS, false, 'INVALID_ARGUMENT');
    if (scheduleSeed !== null) assertInteger('concurrency.scheduleSeed', scheduleSeed, 0, 0xffff_ffff);
  }
  assertArray('policies', o.policies, assertString);
  assertArray('vmms', o.vmms, (at, vmm) =>
    assertString(`${at}.name`, (vmm as { name?: unknown } | null)?.name),
  );
  assertArray('workloads', o.workloads, assertString);
  assertArray('expectations', o.expectations, assertString);
  // The wasm guests' rows (`--guest`): each a name, the file it was loaded from and the hang timeout it ran with.
  if (o.guests !== undefined)
    assertArray('guests', o.guests, (at, g) => {
      const guest = g as { name?: unknown; file?: unknown; callTimeoutMs?: unknown } | null;
      assertString(`${at}.name`, guest?.name);
      assertString(`${at}.file`, guest?.file);
      if (guest?.callTimeoutMs !== undefined)
        assertInteger(`${at}.callTimeoutMs`, guest.callTimeoutMs, 1, MAX_GUEST_CALL_TIMEOUT_MS);
    });
  assertArray('results', o.results, (at, r) => {
    if (typeof r !== 'object' || r === null)
      throw new UsageError(`${at} must be a ScenarioResult, got ${show(r)}`, 'INVALID_ARGUMENT', at);
  });
  if (typeof o.wallMs !== 'number' || !(o.wallMs >= 0) || !Number.isFinite(o.wallMs))
    throw new UsageError(
      `wallMs must be a non-negative number, got ${show(o.wallMs)}`,
      'INVALID_ARGUMENT',
      'wallMs',
    );
}
