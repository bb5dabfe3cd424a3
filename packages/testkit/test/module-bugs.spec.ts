/**
 * Regression tests for bugs the testkit found in other packages.
 */
import { TdGuest } from '@tdxsim/guest';
import { sharedBit, TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { hostileVmm, ScriptedVmm } from '../src/index.js';

describe('tdx-module: guest access through a shared alias of a TD-owned host page', () => {
  // Found by the testkit: @tdxsim/tdx-module's guest-access flow used to read and write the host page a shared-EPT
  // entry names without checking its PAMT type. When a hostile VMM maps a TD-owned page (here the guest's accepted private page, the
  // `shared-maps-td-page` backend) into the shared EPT, a shared-GPA store of the guest lands in that private page's
  // plaintext and a private load returns it unnoticed. On hardware a shared access uses the shared key, so the TD
  // never sees its private plaintext through it nor silently changes it (the module's own hostRead/hostWrite already
  // treat TD-owned pages that way: zeros, dropped writes).
  it('a shared-GPA store never changes a private page the guest accepted', async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 32, size: 2 ** 30 } });
    const hostile = hostileVmm('shared-maps-td-page');
    if (hostile === undefined) throw new Error('missing catalog entry');
    const vmm = await ScriptedVmm.create(module, hostile.behaviour(), { gpaw: 48 });
    vmm.run();
    const guest = await TdGuest.boot(vmm.td.guest(0), { memoryBytes: 64 * 4096, policy: 'strict' });
    const secret = new Uint8Array([0x5e, 0xc2, 0xe7]);
    expect(await guest.write(0, secret)).toMatchObject({ kind: 'ok' });
    // The VMM maps shared frame 8 onto the host page of private page 0.
    expect(await guest.setShared(8 * 4096, 4096)).toMatchObject({ kind: 'ok' });
    const sharedAlias = sharedBit(48) + 8 * 4096;
    expect(await vmm.td.guest(0).write(sharedAlias, new Uint8Array([0xba, 0xd0, 0x00]))).toMatchObject({
      kind: 'ok',
    });
    expect(await guest.read(0, 3)).toEqual({ kind: 'ok', data: secret });
  });
});
