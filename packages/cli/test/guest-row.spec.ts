/**
 * The guest rows of the matrix as a library gives them (what `tdxsim explore --guest` and users' own runners call):
 * a preset's row and a wasm guest's, each a factory for composeTd, a name and a cleanup.
 */

import { kvmVmm } from '@tdxsim/host-kvm';
import { composeTd } from '@tdxsim/tdx-module';
import { scenarioTd } from '@tdxsim/testkit';
import { describe, expect, it } from 'vitest';
import { guestRowOptions } from '../src/guests/guest-row.js';
import {
  type GuestRow,
  type GuestRowOptions,
  loadGuestRow,
  loadGuestRows,
  MAX_GUEST_CALL_TIMEOUT_MS,
  presetRow,
  UsageError,
} from '../src/index.js';
import { hasClang, kernelGuest, warnIfNoClang } from './support/wasm-guests.js';

warnIfNoClang('guest-row.spec.ts');

const MIB = 2 ** 20;

describe('guest rows', () => {
  it('a preset row boots TdGuest with the preset; an unknown preset is a usage error naming the valid ones', async () => {
    const row = presetRow('linux');
    expect({ name: row.name, kind: row.kind, file: row.file }).toEqual({
      name: 'linux',
      kind: 'preset',
      file: undefined,
    });
    const { guest } = await composeTd({
      vmm: kvmVmm(),
      guest: row.factory({ memoryBytes: 16 * MIB }),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    expect(await guest.setShared(MIB, 4096)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    await row.close();
    expect(() => presetRow('nope')).toThrow(UsageError);
    expect(() => presetRow('nope')).toThrow(/unknown policy "nope" \(valid: linux, /);
  });

  it.skipIf(!hasClang)(
    'a wasm row: named after its file, boots the guest in a worker for composeTd, closed per scenario; the row closes its idle threads',
    async () => {
      const file = await kernelGuest();
      const row = await loadGuestRow(file);
      expect({ name: row.name, kind: row.kind, file: row.file }).toEqual({
        name: 'kernel-guest.wasm',
        kind: 'wasm',
        file,
      });
      for (let i = 0; i < 2; i++) {
        const { guest, module, td } = await composeTd({
          vmm: kvmVmm(),
          guest: row.factory({ memoryBytes: 16 * MIB, fuse: 64 }),
          ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
        });
        expect(await guest.setShared(MIB, 4096)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
        expect(guest.check(module, td.tdr)).toEqual([]);
        await guest.close?.();
      }
      await row.close();
      await row.close();
      await expect(loadGuestRows([file, file])).rejects.toThrow(
        /would be named "kernel-guest\.wasm", which .*kernel-guest\.wasm has: rename the file$/,
      );
      await expect(loadGuestRow('/nonexistent/x.wasm')).rejects.toThrow(UsageError);
    },
  );

  it.skipIf(!hasClang)(
    'callTimeoutMs: the row carries it (matrix workers load their rows with it); a bad value or unknown option is a typed usage error naming it',
    async () => {
      const file = await kernelGuest();
      const row = await loadGuestRow(file, { callTimeoutMs: 750 });
      expect(row.callTimeoutMs).toBe(750);
      const plain = await loadGuestRow(file);
      expect(plain.callTimeoutMs).toBeUndefined();
      expect(guestRowOptions({ guests: [row, presetRow('linux')] })).toEqual({ callTimeoutMs: 750 });
      expect(guestRowOptions({ guests: [presetRow('linux')] })).toEqual({});
      expect(() => guestRowOptions({ guests: [row, plain] })).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTION', argument: 'catalog' }),
      );
      // A row built by hand with a bad timeout is refused before any worker loads it (runMatrix asks this first).
      for (const callTimeoutMs of [0, 1.5, '1000'])
        expect(() =>
          guestRowOptions({ guests: [presetRow('linux'), { ...row, callTimeoutMs } as unknown as GuestRow] }),
        ).toThrow(
          expect.objectContaining({ code: 'INVALID_OPTION', argument: 'catalog.guests[1].callTimeoutMs' }),
        );
      for (const [options, argument] of [
        [{ callTimeoutMs: 0 }, 'callTimeoutMs'],
        [{ callTimeoutMs: 1.5 }, 'callTimeoutMs'],
        [{ callTimeoutMs: MAX_GUEST_CALL_TIMEOUT_MS + 1 }, 'callTimeoutMs'],
        [{ callTimeoutMs: '1000' }, 'callTimeoutMs'],
        [{ hangMs: 1000 }, 'hangMs'],
      ] as const) {
        const bad = options as unknown as GuestRowOptions;
        for (const load of [() => loadGuestRow(file, bad), () => loadGuestRows([file], bad)])
          await expect(load()).rejects.toMatchObject({
            name: 'UsageError',
            code: argument === 'hangMs' ? 'UNKNOWN_OPTION' : 'INVALID_OPTION',
            argument,
          });
      }
      await row.close();
    },
  );
});
