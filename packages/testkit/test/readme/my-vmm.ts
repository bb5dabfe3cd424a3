// The backend the testkit README's vitest example checks: the root README's MyVmm (packages/cli/examples/my-vmm.ts),
// a user-written class that the CLI's tests also run through `tdxsim check` and `tdxsim run`.
export { default as MyVmm } from '../../../cli/examples/my-vmm.js';
