import { TestkitError } from '../errors.js';
import {
  assertInteger,
  assertIntegerOption,
  assertNonEmptyArray,
  assertOneOf,
  assertOptions,
  show,
} from '../validation.js';

/** `checkGuestSafety`'s workload: RAM in pages and steps that stay inside it. */
export function checkSafetyWorkload(argument: string, value: unknown): void {
  assertOptions('checkGuestSafety', argument, value, ['memoryPages', 'steps'], false);
  const { memoryPages, steps } = value as { memoryPages?: unknown; steps?: unknown };
  assertInteger(`${argument}.memoryPages`, memoryPages, 1, 2 ** 20);
  assertNonEmptyArray(`${argument}.steps`, steps, false, 'INVALID_ARGUMENT');
  (steps as unknown[]).forEach((step, i) => {
    const at = `${argument}.steps[${i}]`;
    const op = (step as { op?: unknown } | null)?.op;
    assertOneOf(`${at}.op`, op, ['to-shared', 'to-private', 'accept-all'], false, 'INVALID_ARGUMENT');
    if (op === 'accept-all') {
      assertOptions('checkGuestSafety', at, step, ['op'], false);
      return;
    }
    assertOptions('checkGuestSafety', at, step, ['op', 'startPage', 'pages'], false);
    const { startPage, pages } = step as { startPage?: unknown; pages?: unknown };
    assertInteger(`${at}.startPage`, startPage, 0, memoryPages - 1);
    assertInteger(`${at}.pages`, pages, 1, memoryPages - startPage);
  });
}

/** `checkGuestSafety`'s case, checked before any TD is built. */
export function checkSafetyCase(value: unknown, presets: readonly string[]): void {
  assertOptions(
    'checkGuestSafety',
    'safetyCase',
    value,
    ['vmm', 'guest', 'workload', 'gpaw', 'checkEvery'],
    false,
  );
  const { vmm, guest, workload, gpaw, checkEvery } = value as Record<string, unknown>;
  const isModule =
    typeof vmm === 'object' && vmm !== null && typeof (vmm as { load?: unknown }).load === 'function';
  if (!isModule && (typeof vmm !== 'object' || vmm === null || !('steps' in vmm)))
    throw new TestkitError(
      'INVALID_BACKEND',
      `vmm must be a VmmBehaviour ({ steps, order }) or a backend's ContainerModule, got ${show(vmm)}`,
      'vmm',
    );
  if (typeof guest === 'string') assertOneOf('guest', guest, presets, false, 'INVALID_ARGUMENT');
  else if (typeof guest !== 'object' || guest === null)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `guest must be a preset name or a GuestPolicy, got ${show(guest)}`,
      'guest',
    );
  if (workload !== undefined) checkSafetyWorkload('workload', workload);
  assertOneOf('gpaw', gpaw, [48, 52], true, 'INVALID_ARGUMENT');
  assertIntegerOption('checkEvery', checkEvery, 1);
}
