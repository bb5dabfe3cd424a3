import { describe, expect, it } from 'vitest';
import { TdGuest } from '../src/index.js';
import { setupGuestTd } from './test-vmm.js';

describe('guest smoke', () => {
  it('converts 4 MiB to shared and back with strict and linux, and the ledger matches the module', async () => {
    for (const policy of ['strict', 'linux'] as const) {
      const { module, td, vmm } = await setupGuestTd({ vmm: { chunkPages: 64 } });
      const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 16 * 2 ** 20, policy });
      expect(await guest.acceptAll()).toMatchObject({ kind: 'ok' });
      expect(guest.check(module, td.tdr)).toEqual([]);
      const shared = await guest.setShared(0x40_0000, 4 * 2 ** 20);
      expect(shared).toMatchObject({ kind: 'ok', mapGpaCalls: 16 });
      expect(guest.ledger.stateOf(0x40_0000)).toBe('shared');
      expect(guest.check(module, td.tdr)).toEqual([]);
      const back = await guest.setPrivate(0x40_0000, 4 * 2 ** 20);
      expect(back).toMatchObject({ kind: 'ok', mapGpaCalls: 16 });
      expect(guest.ledger.stateOf(0x40_0000)).toBe('private-accepted');
      expect(guest.check(module, td.tdr)).toEqual([]);
      expect(vmm.calls.length).toBe(32);
      const write = await guest.write(0x40_1000, new Uint8Array([9, 8, 7]));
      expect(write.kind).toBe('ok');
    }
  });
});
