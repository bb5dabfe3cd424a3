import { KvmVmm } from '@tdxsim/host-kvm';
import type { VmmFactory } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { exploreSchedules, hasHostInitiatedConversions, raceScenarios } from '../../src/index.js';

// The catalogue's host-initiated race on the KVM backend: the host's own conversions really happen in every
// schedule (KvmVmm offers HostInitiatedConversions), racing both vCPUs' accesses.

const kvm: VmmFactory = async (module, build) => {
  const vmm = await KvmVmm.create(module, {}, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

describe('host-conversion-racing-accesses on KVM', () => {
  it('KvmVmm offers host-initiated conversions; a plain object does not', () => {
    expect(hasHostInitiatedConversions({ setMemoryAttributes: async () => undefined })).toBe(true);
    expect(hasHostInitiatedConversions({})).toBe(false);
    expect(hasHostInitiatedConversions(null)).toBe(false);
  });

  it('in 60 random schedules the host converts and each access ends done, with a #VE, or stuck between the aliases', async () => {
    const race = raceScenarios.find((entry) => entry.name === 'host-conversion-racing-accesses');
    if (race === undefined) throw new Error('missing scenario');
    const seen = new Set<string>();
    const result = await exploreSchedules({
      scenario: race.scenario(kvm),
      scheduler: 'random',
      schedules: 60,
      seed: 3,
      property: ({ td }) => {
        seen.add(td.outcomes.join(' | '));
        if (td.outcomes[0] !== '"host converted P to shared and back"') return `host: ${td.outcomes[0]}`;
        // GUEST_STUCK: once the host is done, vCPU 0 (private alias) and vCPU 1 (shared alias) can take turns
        // converting P back through userspace's memory-fault handler, each undoing the other, as two vCPUs using both
        // aliases of one page do under KVM and QEMU; the module gives an access up after six faults in a row.
        return td.outcomes
          .slice(1)
          .every((line) => line === '"ok"' || line === '"ve"' || line === 'threw GUEST_STUCK')
          ? true
          : `accesses: ${td.outcomes.join(' | ')}`;
      },
    });
    expect(result.failure?.message).toBeUndefined();
    expect(result.distinctInterleavings).toBeGreaterThan(10);
    // Both outcomes of the private read happen: before the host's conversion (done) and after it (a new page: #VE).
    expect([...seen].some((line) => line.includes('"ve"'))).toBe(true);
  });
});
