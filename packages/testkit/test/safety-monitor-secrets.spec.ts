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

test('the first planted page reads back as `tdxsim secret #1` then zeros, the second as `#2`', async () => {
  const { guest, monitor } = await watched();
  for (const start of [8 * PAGE, 16 * PAGE]) {
    const range = { start, end: start + 2 * PAGE };
    expect(await guest.setShared(start, 2 * PAGE)).toMatchObject({ kind: 'ok' });
    const result = await guest.setPrivate(start, 2 * PAGE);
    expect(result).toMatchObject({ kind: 'ok' });
    await monitor.afterConversion(range, false, result);
  }
  expect(await guest.read(8 * PAGE, SECRET_LENGTH)).toEqual({
    kind: 'ok',
    data: secret('tdxsim secret #1'),
  });
  expect(await guest.read(16 * PAGE, SECRET_LENGTH)).toEqual({
    kind: 'ok',
    data: secret('tdxsim secret #2'),
  });
  // Only the first page of each conversion holds a secret.
  expect(await guest.read(9 * PAGE, SECRET_LENGTH)).toEqual({
    kind: 'ok',
    data: new Uint8Array(SECRET_LENGTH),
  });
  expect(await monitor.check()).toEqual([]);
});

test('secrets of two-digit numbers: `tdxsim secret #10`, `#12`', async () => {
  const { guest, monitor } = await watched();
  for (let page = 20; page < 32; page++) {
    expect(await guest.setShared(page * PAGE, PAGE)).toMatchObject({ kind: 'ok' });
    const result = await guest.setPrivate(page * PAGE, PAGE);
    expect(result).toMatchObject({ kind: 'ok' });
    await monitor.afterConversion({ start: page * PAGE, end: (page + 1) * PAGE }, false, result);
  }
  expect(await guest.read(29 * PAGE, SECRET_LENGTH)).toEqual({
    kind: 'ok',
    data: secret('tdxsim secret #10'),
  });
  expect(await guest.read(31 * PAGE, SECRET_LENGTH)).toEqual({
    kind: 'ok',
    data: secret('tdxsim secret #12'),
  });
  expect(await monitor.check()).toEqual([]);
});
