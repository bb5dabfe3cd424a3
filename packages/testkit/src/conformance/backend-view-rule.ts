import { checkVmmView, type TdxModule, type Vmm } from '@tdxsim/tdx-module';

/**
 * The conformance rule `backend-view-matches`: a backend that exposes its own view of what it mapped (`Vmm.view`)
 * must, after every step of a workload (when nothing is half done), hold exactly what the module's Secure-EPT and
 * shared EPT hold. Returns the evidence, one line per mismatch (at most 3); none when the view matches or the backend
 * exposes none (no real VMM can read the S-EPT, so a backend without a view of its own is not judged here).
 */
export function backendViewEvidence(vmm: Vmm, module: TdxModule, tdr: number, when: string): string[] {
  const view = vmm.view?.();
  if (view === undefined) return [];
  return checkVmmView(module, tdr, view, { limit: 3 }).map((mismatch) => `${mismatch.message} (${when})`);
}
