/**
 * The secrets SafetyMonitor plants in the first page of each to-private conversion: each its own label, the UTF-8
 * bytes of `tdxsim secret #<n>` counted from 1, then zeros up to the secret's 32 bytes.
 */
import { GuestIds, guestModule, type TdGuest } from '@tdxsim/guest';
import { composeTd } from '@tdxsim/tdx-module';
import { expect, test } from 'vitest';
import { HONEST_STEP, SafetyMonitor, type ScriptedVmm, scriptedVmm } from '../src/index.js';

const PAGE = 4096;
const SECRET_LENGTH = 32;

/** `label`'s UTF-8 bytes followed by zeros, `SECRET_LENGTH` bytes in all. */
function secret(label: string): Uint8Array {
  const bytes = new Uint8Array(SECRET_LENGTH);
  bytes.set(new TextEncoder().encode(label));
  return bytes;
}

/** A guest of 64 pages behind an honest scripted VMM, and a monitor of it. */
async function watched() {
  const { module, td, hosted, guest } = await composeTd<TdGuest>({
    vmm: scriptedVmm({ steps: [HONEST_STEP], order: 'cycle' }),
    guest: { module: guestModule({ memoryBytes: 64 * PAGE, policy: 'strict' }), id: GuestIds.Guest },
    sim: { module: { tdmr: { base: 2 ** 36, size: 2 ** 30 } } },
  });
  const monitor = new SafetyMonitor({ module, tdr: td.tdr, guest, vmm: hosted.vmm as ScriptedVmm });
  return { guest, monitor };
}

/** Converts `pages` pages at `start` to shared and back, and has the monitor plant its secret as a campaign does. */
async function convertBack(
  guest: TdGuest,
  monitor: SafetyMonitor,
  start: number,
  pages: number,
): Promise<void> {
  expect(await guest.setShared(start, pages * PAGE)).toMatchObject({ kind: 'ok' });
  const result = await guest.setPrivate(start, pages * PAGE);
  expect(result).toMatchObject({ kind: 'ok' });
  await monitor.afterConversion({ start, end: start + pages * PAGE }, false, result);
}

/** What the guest reads at `gpa`: `label`'s secret, or zeros without one. */
async function expectSecretAt(guest: TdGuest, gpa: number, label?: string): Promise<void> {
  const data = label === undefined ? new Uint8Array(SECRET_LENGTH) : secret(label);
  expect(await guest.read(gpa, SECRET_LENGTH)).toEqual({ kind: 'ok', data });
}

test('the first planted page reads back as `tdxsim secret #1` then zeros, the second as `#2`', async () => {
  const { guest, monitor } = await watched();
  for (const start of [8 * PAGE, 16 * PAGE]) await convertBack(guest, monitor, start, 2);
  await expectSecretAt(guest, 8 * PAGE, 'tdxsim secret #1');
  await expectSecretAt(guest, 16 * PAGE, 'tdxsim secret #2');
  // Only the first page of each conversion holds a secret.
  await expectSecretAt(guest, 9 * PAGE);
  expect(await monitor.check()).toEqual([]);
});

test('secrets of two-digit numbers: `tdxsim secret #10`, `#12`', async () => {
  const { guest, monitor } = await watched();
  for (let page = 20; page < 32; page++) await convertBack(guest, monitor, page * PAGE, 1);
  await expectSecretAt(guest, 29 * PAGE, 'tdxsim secret #10');
  await expectSecretAt(guest, 31 * PAGE, 'tdxsim secret #12');
  expect(await monitor.check()).toEqual([]);
});
