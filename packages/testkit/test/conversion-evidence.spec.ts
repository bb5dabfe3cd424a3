/**
 * ConversionEvidenceSink: what the VMM acknowledged and removed, read from the trace alone, so that the safety monitor
 * can tell a guest that followed the VMM from one that claimed more than any reply said.
 */
import { type GuestPolicy, type GuestPresetName, guestPresets, TdGuest } from '@tdxsim/guest';
import { kvmVmm } from '@tdxsim/host-kvm';
import { type BackendSource, composeTd } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { ConversionEvidenceSink, hostileVmm, SafetyMonitor } from '../src/index.js';

const MIB = 2 ** 20;
const range = { start: 16 * MIB, end: 17 * MIB };

async function td(vmm: BackendSource, policy: GuestPresetName | GuestPolicy) {
  const evidence = new ConversionEvidenceSink();
  const composed = await composeTd({
    vmm,
    guest: (cpu, trace) => TdGuest.boot(cpu, { memoryBytes: 64 * MIB, policy, trace }),
    sim: { trace: evidence },
  });
  return { ...composed, evidence };
}

describe('ConversionEvidenceSink', () => {
  it('honest conversions: each reply acknowledges its request; to shared, the private pages are removed', async () => {
    const { guest, evidence } = await td(kvmVmm(), 'linux');
    await guest.setPrivate(range.start, range.end - range.start); // accepted: backed by private pages
    evidence.takeEvidence();
    await guest.setShared(range.start, range.end - range.start);
    const toShared = evidence.takeEvidence();
    expect(toShared.acknowledged).toEqual([range]);
    expect(toShared.removed.reduce((bytes, r) => bytes + r.end - r.start, 0)).toBe(range.end - range.start);
    expect(toShared.removed.every((r) => r.start >= range.start && r.end <= range.end)).toBe(true);
    await guest.setPrivate(range.start, range.end - range.start);
    expect(evidence.takeEvidence()).toEqual({ acknowledged: [range], removed: [] });
    expect(evidence.pendingMapGpa(0)).toBeUndefined();
  });

  it('a RETRY with R11 past the end acknowledges nothing: the guest that follows it is caught over-claiming', async () => {
    const followsR11 = {
      ...guestPresets.linux,
      name: 'no-r11-check',
      mapGpa: {
        ...guestPresets.linux.mapGpa,
        r11: { bounds: 'none' as const, aligned: false, withinRequest: false, pastEnd: 'done' as const },
      },
    };
    const lying = hostileVmm('r11-past-end')?.module({ seed: 1 });
    if (lying === undefined) throw new Error('no r11-past-end backend');
    const { guest, module, td: built, evidence } = await td(lying, followsR11);
    const monitor = new SafetyMonitor({ module, tdr: built.tdr, guest });
    evidence.takeEvidence();
    const result = await guest.setShared(range.start, range.end - range.start);
    expect(result.kind).toBe('ok');
    const seen = evidence.takeEvidence();
    expect(seen.acknowledged).toEqual([]);
    await monitor.afterConversion(range, true, result, seen);
    expect(monitor.violations.map((v) => v.rule)).toEqual(['overclaim-shared']);
  });

  it('a RETRY with an unaligned R11 acknowledges the whole pages below it: evidence the monitor takes', async () => {
    const lying = hostileVmm('r11-unaligned')?.module({ seed: 1 });
    if (lying === undefined) throw new Error('no r11-unaligned backend');
    const { guest, module, td: built, evidence } = await td(lying, 'openvmm');
    const monitor = new SafetyMonitor({ module, tdr: built.tdr, guest });
    evidence.takeEvidence();
    const result = await guest.setShared(range.start, range.end - range.start);
    const seen = evidence.takeEvidence();
    expect(seen.acknowledged.length).toBeGreaterThan(0);
    for (const r of seen.acknowledged) {
      expect(r.start % 4096).toBe(0);
      expect(r.end % 4096).toBe(0);
    }
    await expect(monitor.afterConversion(range, true, result, seen)).resolves.toBeUndefined();
  });
});
