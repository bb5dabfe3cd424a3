import { describe, expect, it } from 'vitest';
import { checkLedger, TdGuest } from '../src/index.js';
import { setupGuestTd } from './test-vmm.js';

const MIB2 = 2 ** 21;
const mapped = { module: 'MAPPED', level: 0 } as const;

describe('checkLedger', () => {
  it('joins adjacent mismatches of one state across a table boundary, and keeps apart what is not adjacent or alike', async () => {
    const { module, td } = await setupGuestTd();
    const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 2 * MIB2, policy: 'strict' });
    expect(await guest.acceptAll()).toMatchObject({ kind: 'ok' });
    expect(checkLedger(guest.ledger, module, td.tdr)).toEqual([]);
    // The module reads [2M − 64K, 2M + 64K) as two runs of MAPPED 4K pages, one per leaf table: one mismatch.
    expect(module.privateRun(td.tdr, MIB2 - 0x1_0000, MIB2 + 0x1_0000).end).toBe(MIB2);
    guest.ledger.set({ start: MIB2 - 0x1_0000, end: MIB2 + 0x1_0000 }, 'private-unaccepted');
    // Two mismatches with a page between them, and two adjacent ones the ledger holds in different states.
    guest.ledger.set({ start: 0x1000, end: 0x2000 }, 'shared');
    guest.ledger.set({ start: 0x3000, end: 0x4000 }, 'shared');
    guest.ledger.set({ start: 0x30_0000, end: 0x30_1000 }, 'private-unaccepted');
    guest.ledger.set({ start: 0x30_1000, end: 0x30_2000 }, 'shared');
    expect(checkLedger(guest.ledger, module, td.tdr)).toEqual([
      { start: 0x1000, end: 0x2000, ledger: 'shared', ...mapped },
      { start: 0x3000, end: 0x4000, ledger: 'shared', ...mapped },
      { start: MIB2 - 0x1_0000, end: MIB2 + 0x1_0000, ledger: 'private-unaccepted', ...mapped },
      { start: 0x30_0000, end: 0x30_1000, ledger: 'private-unaccepted', ...mapped },
      { start: 0x30_1000, end: 0x30_2000, ledger: 'shared', ...mapped },
    ]);
    // The ledger's runs as checkLedger reads them (forEachRun) are the runs entries() lists, in order.
    const visited: { start: number; end: number; state: string }[] = [];
    guest.ledger.forEachRun((start, end, state) => visited.push({ start, end, state }));
    expect(visited).toEqual([...guest.ledger.entries()]);
    expect(visited.length).toBeGreaterThan(5);
  });

  it('keeps apart adjacent mismatches of one ledger state where the module reads two states', async () => {
    const { module, td } = await setupGuestTd();
    const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 2 * MIB2, policy: 'strict' });
    expect(await guest.acceptAll()).toMatchObject({ kind: 'ok' });
    // The host takes page 0x6000 away (BLOCK, TRACK, kick, REMOVE: FREE) and blocks page 0x5000 (BLOCKED): both
    // disagree with the ledger's accepted claim, in two states.
    expect((await td.host.rangeBlock(td.tdr, 0x6000, 0)).status).toBe(0n);
    expect((await td.host.track(td.tdr)).status).toBe(0n);
    for (const tdvpr of td.tdvprs) module.kickVcpu(tdvpr);
    expect((await td.host.pageRemove(td.tdr, 0x6000, 0)).status).toBe(0n);
    expect((await td.host.rangeBlock(td.tdr, 0x5000, 0)).status).toBe(0n);
    const found = checkLedger(guest.ledger, module, td.tdr);
    expect(found.map(({ start, end, ledger, module: state }) => ({ start, end, ledger, state }))).toEqual([
      { start: 0x5000, end: 0x6000, ledger: 'private-accepted', state: 'BLOCKED' },
      { start: 0x6000, end: 0x7000, ledger: 'private-accepted', state: 'FREE' },
    ]);
  });
});
