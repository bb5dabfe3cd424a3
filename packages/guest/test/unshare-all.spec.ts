/**
 * Issue 10, "Shutdown (the kexec path)": `unshareAll()` refuses new conversions, waits for those in flight within a
 * bound, converts every shared page back to private and accepts it, cross-checks the guest's own count of shared
 * pages against the ledger (and the module), and reports what could not be converted back.
 */
import { assertInvariants, TdvmcallStatus } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { GuestError, TdGuest } from '../src/index.js';
import { setupGuestTd, type TestVmmOptions, type VmmStep } from './test-vmm.js';
import { vmmGate } from './vmm-gate.js';

const PAGE = 4096;
const MIB = 2 ** 20;

async function boot(vmm: TestVmmOptions = {}, vcpus = 1) {
  const t = await setupGuestTd({ vcpus, vmm });
  const cpus = Array.from({ length: vcpus }, (_, i) => t.td.guest(i));
  const guest = await TdGuest.boot(cpus, { memoryBytes: 16 * MIB });
  const verify = { module: t.module, tdr: t.td.tdr };
  return { ...t, guest, verify };
}

/** Shares three ranges, one of them accepted before. */
async function share(guest: TdGuest): Promise<void> {
  expect(await guest.setPrivate(MIB, 4 * PAGE)).toMatchObject({ kind: 'ok' });
  for (const [start, pages] of [
    [MIB, 4],
    [2 * MIB, 8],
    [6 * MIB, 1],
  ] as const) {
    expect(await guest.setShared(start, pages * PAGE)).toMatchObject({ kind: 'ok' });
  }
}

describe('unshareAll', () => {
  it('converts every shared page back and accepts it; counts agree; later conversions are refused', async () => {
    const t = await boot();
    await share(t.guest);
    expect(t.guest.sharedPages).toBe(13);
    const report = await t.guest.unshareAll({ verify: t.verify });
    expect(report).toEqual({
      kind: 'ok',
      sharedCounted: 13,
      sharedFound: 13,
      convertedBack: 13,
      mapGpaCalls: 3,
      acceptCalls: 13,
      notConverted: [],
      stillInFlight: [],
      mismatches: [],
    });
    expect(t.guest.sharedPages).toBe(0);
    expect(t.guest.ledger.totals().shared).toBe(0);
    for (const gpa of [MIB, 2 * MIB + 7 * PAGE, 6 * MIB]) {
      expect(t.guest.ledger.stateOf(gpa)).toBe('private-accepted');
      expect((await t.guest.read(gpa, 4)).kind).toBe('ok');
    }
    await expect(t.guest.setShared(8 * MIB, PAGE)).rejects.toSatisfy(
      (e: unknown) => GuestError.is(e) && e.code === 'SHUT_DOWN',
    );
    await expect(t.guest.unshareAll()).rejects.toSatisfy(
      (e: unknown) => GuestError.is(e) && e.code === 'SHUT_DOWN',
    );
    expect(t.vmm.calls).toHaveLength(3 + 3);
    assertInvariants(t.module);
  });

  it('waits for a conversion in flight and converts what it shared back too', async () => {
    const gate = vmmGate((s) => s.kind === 'map-gpa', { armed: false });
    const t = await boot({ hook: gate.hook });
    await share(t.guest);
    gate.arm();
    const inFlight = t.guest.setShared(10 * MIB, 2 * PAGE);
    await gate.parked;
    const shutdown = t.guest.unshareAll({ verify: t.verify });
    setImmediate(gate.open);
    expect(await inFlight).toMatchObject({ kind: 'ok' });
    expect(await shutdown).toMatchObject({
      kind: 'ok',
      sharedCounted: 15,
      sharedFound: 15,
      convertedBack: 15,
    });
    expect(t.guest.ledger.totals().shared).toBe(0);
  });

  it('goes on without a conversion that does not end within the bound (on another vCPU), and says so', async () => {
    // vCPU 0 is parked for good inside its MapGPA.
    const gate = vmmGate((s) => s.kind === 'map-gpa', { armed: false, forever: true });
    const t = await boot({ hook: gate.hook }, 2);
    await share(t.guest);
    gate.arm();
    void t.guest.setShared(10 * MIB, 2 * PAGE, { vcpu: 0 });
    await gate.parked;
    const report = await t.guest.unshareAll({ waitTurns: 3, vcpu: 1, verify: t.verify });
    expect(report).toMatchObject({
      kind: 'incomplete',
      sharedCounted: 13,
      sharedFound: 13,
      convertedBack: 13,
      notConverted: [],
      stillInFlight: [{ start: 10 * MIB, end: 10 * MIB + 2 * PAGE }],
      mismatches: [],
    });
    expect(t.guest.ledger.stateOf(10 * MIB)).toBe('converting');
  });

  it('reports what the VMM refused to convert back, quarantined, and converts the rest', async () => {
    let refuse = false;
    const t = await boot({
      script: (call) =>
        refuse && call.r12 === BigInt(2 * MIB)
          ? { r10: TdvmcallStatus.INVALID_OPERAND, r11: call.r12 }
          : undefined,
    });
    await share(t.guest);
    refuse = true;
    const report = await t.guest.unshareAll({ verify: t.verify });
    expect(report).toMatchObject({
      kind: 'incomplete',
      sharedCounted: 13,
      sharedFound: 13,
      convertedBack: 5,
      notConverted: [{ start: 2 * MIB, end: 2 * MIB + 8 * PAGE, state: 'quarantined' }],
      mismatches: [],
    });
  });

  it('an abort stops it before its next TDCALL', async () => {
    const controller = new AbortController();
    const t = await boot({
      hook: (s: VmmStep) => {
        if (s.kind === 'aug' && s.gpa === 2 * MIB + 2 * PAGE) controller.abort('kexec cancelled');
      },
    });
    await share(t.guest);
    const report = await t.guest.unshareAll({ signal: controller.signal, verify: t.verify });
    expect(report).toMatchObject({
      kind: 'incomplete',
      convertedBack: 4 + 3,
      stoppedBy: { kind: 'aborted', reason: 'kexec cancelled' },
      mismatches: [],
    });
    expect(report.notConverted).toEqual([
      { start: 2 * MIB + 3 * PAGE, end: 2 * MIB + 8 * PAGE, state: 'quarantined' },
      { start: 6 * MIB, end: 6 * MIB + PAGE, state: 'shared' },
    ]);
  });

  it("the guest's own count is held against the ledger: a ledger changed behind its back shows", async () => {
    const t = await boot();
    await share(t.guest);
    t.guest.ledger.set({ start: 12 * MIB, end: 12 * MIB + 2 * PAGE }, 'shared');
    const report = await t.guest.unshareAll({ verify: t.verify });
    expect(report).toMatchObject({ kind: 'incomplete', sharedCounted: 13, sharedFound: 15 });
  });
});
