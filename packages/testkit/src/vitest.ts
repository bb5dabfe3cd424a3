/**
 * @tdxsim/testkit/vitest: the testkit's helpers that register vitest tests. Import from here in a vitest suite; the
 * main entry (`@tdxsim/testkit`) never imports vitest.
 */
import { type BackendSource, backendName } from '@tdxsim/tdx-module';
import { beforeAll, describe, expect, it } from 'vitest';
import { CONFORMANCE_RULES, type ConformanceCheck } from './conformance/conformance-rules.js';
import { type ConformanceOptions, runConformance } from './conformance/run-conformance.js';

export interface VmmConformanceOptions extends ConformanceOptions {
  /** The describe block's name (default: the backend's class or function name). */
  readonly name?: string;
}

/**
 * Registers the conformance suite of a VMM backend: one `describe` named after the backend and one test per rule of
 * {@link CONFORMANCE_RULES}, each failing with the message that names the broken rule and its evidence. The
 * workloads run once, before the tests.
 *
 * ```ts
 * import { vmmConformance } from '@tdxsim/testkit/vitest';
 * vmmConformance(MyVmm); // a Vmm class, a VmmFactory, or a ContainerModule such as kvmVmm()
 * ```
 */
export function vmmConformance(backend: BackendSource, options: VmmConformanceOptions = {}): void {
  const { name, ...conformance } = options;
  describe(`VMM conformance: ${name ?? backendName(backend)}`, () => {
    let checks: ConformanceCheck[] = [];
    // Every workload of `tdxsim run` on two TD shapes with two guests: seconds, not the default hook timeout.
    beforeAll(async () => {
      checks = await runConformance(backend, conformance);
    }, 300_000);
    for (const rule of CONFORMANCE_RULES) {
      it(`${rule.id}: ${rule.title}`, () => {
        const check = checks.find((c) => c.rule === rule.id);
        expect(check, `no verdict for ${rule.id}`).toBeDefined();
        expect(check?.passed, check?.message).toBe(true);
      });
    }
  });
}
