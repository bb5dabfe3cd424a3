import { assertCatalog, assertSpec, assertVmmEntry, assertWorkload } from './api-arguments.js';
import {
  assertArray,
  assertBoolean,
  assertFunction,
  assertIntegerOption,
  assertOneOf,
  assertOptions,
  assertShape,
  assertString,
} from './api-validation.js';
import { SCENARIO_SCHEDULERS } from './scenario/scenario-concurrency.js';

/** The options of the CLI's library functions that take many, checked in one place (issue 10 item 7). */

/** {@link runScenario}'s arguments. */
export function checkRunScenario(spec: unknown, vmm: unknown, workload: unknown, options: unknown): void {
  assertSpec('spec', spec);
  assertVmmEntry('vmm', vmm);
  assertWorkload('workload', workload);
  assertOptions('runScenario', 'options', options, [
    'keepTrace',
    'traceDir',
    'checkEvery',
    'fuse',
    'timeoutMs',
    'thread',
    'onProgress',
    'guest',
    'vcpus',
    'scheduler',
    'scheduleSeed',
  ]);
  const o = (options ?? {}) as Record<string, unknown>;
  if (o.guest !== undefined)
    assertShape(
      'guest',
      o.guest,
      'a ScenarioGuest ({ name, factory }, e.g. loadGuestRow)',
      ['factory'],
      ['name'],
    );
  assertBoolean('keepTrace', o.keepTrace, true);
  if (o.traceDir !== undefined) assertString('traceDir', o.traceDir, 'INVALID_OPTION');
  assertIntegerOption('checkEvery', o.checkEvery, 1);
  assertIntegerOption('fuse', o.fuse, 1);
  assertIntegerOption('timeoutMs', o.timeoutMs, 0);
  assertOneOf('thread', o.thread, ['dedicated', 'shared'], true);
  assertFunction('onProgress', o.onProgress, true);
  checkConcurrencyOptions(o);
}

/** `vcpus`, `scheduler` and `scheduleSeed` of {@link runScenario} and {@link runMatrix}. */
function checkConcurrencyOptions(o: Record<string, unknown>): void {
  assertIntegerOption('vcpus', o.vcpus, 1, 64);
  assertOneOf('scheduler', o.scheduler, SCENARIO_SCHEDULERS, true);
  assertIntegerOption('scheduleSeed', o.scheduleSeed, 0, 0xffff_ffff);
}

/** {@link runMatrix}'s options. */
export function checkMatrixOptions(options: unknown): void {
  assertOptions(
    'runMatrix',
    'options',
    options,
    [
      'specs',
      'catalog',
      'backendFiles',
      'jobs',
      'isolate',
      'checkEvery',
      'fuse',
      'timeoutMs',
      'traceDir',
      'onStart',
      'onProgress',
      'onResult',
      'vcpus',
      'scheduler',
      'scheduleSeed',
    ],
    false,
  );
  const o = options as Record<string, unknown>;
  assertArray('specs', o.specs, assertSpec, 'INVALID_OPTION');
  assertCatalog('catalog', o.catalog);
  assertArray('backendFiles', o.backendFiles, assertString, 'INVALID_OPTION');
  assertIntegerOption('jobs', o.jobs, 1, 1024);
  assertBoolean('isolate', o.isolate, true);
  assertIntegerOption('checkEvery', o.checkEvery, 1);
  assertIntegerOption('fuse', o.fuse, 1);
  assertIntegerOption('timeoutMs', o.timeoutMs, 0);
  if (o.traceDir !== undefined) assertString('traceDir', o.traceDir, 'INVALID_OPTION');
  for (const name of ['onStart', 'onProgress', 'onResult']) assertFunction(name, o[name], true);
  checkConcurrencyOptions(o);
}

/** {@link selectSpecs}'s arguments. */
export function checkSelection(catalog: unknown, selection: unknown): void {
  assertCatalog('catalog', catalog);
  assertOptions(
    'selectSpecs',
    'selection',
    selection,
    ['policies', 'vmms', 'workloads', 'seed', 'vmmNamed'],
    false,
  );
  const s = selection as Record<string, unknown>;
  assertArray('selection.policies', s.policies, assertString);
  assertArray('selection.vmms', s.vmms, assertVmmEntry);
  assertArray('selection.workloads', s.workloads, assertString);
  assertIntegerOption('selection.seed', s.seed ?? Number.NaN, Number.MIN_SAFE_INTEGER);
  assertBoolean('selection.vmmNamed', s.vmmNamed);
}
