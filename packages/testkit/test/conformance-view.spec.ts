/**
 * The conformance rule `backend-view-matches`: a backend that keeps its own table of what it mapped (and exposes it
 * as `Vmm.view`) is held against the module's truth after every workload step.
 */
import type { VmmFactory } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { MirrorVmm, runConformance } from '../src/index.js';

const mirror: VmmFactory = async (module, build) => {
  const vmm = await MirrorVmm.create(module, {}, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

/** The same backend, whose view forgets its lowest private mapping: its belief drifted from what it installed. */
const forgetful: VmmFactory = async (module, build) => {
  const vmm = await MirrorVmm.create(module, {}, build);
  const view = () => {
    const real = vmm.view();
    const mappings = [...real.privateMappings()].sort((a, b) => a.gpa - b.gpa).slice(1);
    return { privateMappings: () => mappings, sharedMappings: () => real.sharedMappings() };
  };
  const lying = { onTdExit: vmm.onTdExit.bind(vmm), view };
  return { vmm: lying, td: vmm.td, run: () => vmm.td.run(lying) };
};

describe('conformance rule backend-view-matches', () => {
  it('a backend whose mirror is exact passes it (and every other rule)', async () => {
    const checks = await runConformance(mirror, { guests: ['strict'] });
    const view = checks.find((c) => c.rule === 'backend-view-matches');
    expect(view?.passed, view?.message).toBe(true);
    expect(checks.filter((c) => !c.passed).map((c) => c.message)).toEqual([]);
  });

  it('a backend whose view drifted fails it, with the GPA and what each side holds', async () => {
    const checks = await runConformance(forgetful, { guests: ['strict'] });
    const view = checks.find((c) => c.rule === 'backend-view-matches');
    expect(view?.passed).toBe(false);
    expect(view?.message).toMatch(
      /^backend-view-matches broken \(the backend's own view of what it mapped matches the module \(if it has one\)\): the Secure-EPT maps 0x[0-9a-f]+ \(4K, (MAPPED|PENDING), host page 0x[0-9a-f]+\) but the backend's view has no mapping there \(after "/,
    );
  });
});
