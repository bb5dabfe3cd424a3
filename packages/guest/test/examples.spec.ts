import { describe, expect, it } from 'vitest';
import { swiotlb1g } from '../examples/swiotlb-1g.js';

describe('README example', () => {
  it('converts 1 GiB to shared and back in 512 MapGPA calls each way', async () => {
    const lines: string[] = [];
    const { calls } = await swiotlb1g((line) => lines.push(line));
    expect(calls).toEqual([512, 512]);
    expect(lines).toEqual([
      '1 GiB to shared: ok in 512 MapGPA calls',
      'and back to private: ok in 512 MapGPA calls and 513 accepts',
      'ledger matches the module: true',
    ]);
  });
});

describe('README: the storm guard and cancellation', () => {
  it('stops one page per call at the budget; an abort stops before the next TDCALL', async () => {
    const { stormGuard } = await import('../examples/storm-guard.js');
    const lines: string[] = [];
    await stormGuard((line) => lines.push(line));
    expect(lines).toEqual([
      "strict's budget: 4194304 MapGPA calls per operation",
      '16 GiB at one page per call: failed after 10000 calls (call-bound, guard storm)',
      'converted: 10000 pages; asked for and unacknowledged, quarantined: 4184304 pages',
      'linux, cancelled: aborted after 100 calls (deadline)',
      'ledger matches the module: true',
    ]);
  });
});

describe('README: unshareAll, the kexec path', () => {
  it('converts every shared page back, the counts agree, later conversions are refused', async () => {
    const { kexec } = await import('../examples/kexec.js');
    const lines: string[] = [];
    await kexec((line) => lines.push(line));
    expect(lines).toEqual([
      'shared before kexec: 16389 pages',
      'unshareAll: ok; counted 16389, found 16389, converted back 16389 (3 MapGPA, 16421 ACCEPT)',
      'not converted: 0; ledger vs module: 0 mismatches',
      'a conversion after it: SHUT_DOWN',
    ]);
  });
});

describe('README: a policy of your own', () => {
  it('asks for 2 MiB per MapGPA call', async () => {
    const { guestPresets, TdGuest } = await import('../src/index.js');
    const { setupGuestTd } = await import('./test-vmm.js');
    const { module, td, vmm } = await setupGuestTd();
    const chunked = {
      name: 'chunked-2m',
      mapGpa: { ...guestPresets.strict.mapGpa, name: 'chunked-2m', request: 2 * 2 ** 20 },
      accept: { ...guestPresets.strict.accept, busyRetries: 64 },
    };
    const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 16 * 2 ** 20, policy: chunked });
    expect(await guest.setShared(0, 8 * 2 ** 20)).toMatchObject({ kind: 'ok', mapGpaCalls: 4 });
    expect(vmm.calls.map((call) => call.r13)).toEqual([0x200000n, 0x200000n, 0x200000n, 0x200000n]);
    expect(guest.check(module, td.tdr)).toEqual([]);
  });
});
