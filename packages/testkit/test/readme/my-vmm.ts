// The backend the testkit README's vitest example checks: the root README's MyVmm, a user-written class.
export { MyVmm } from '../../../guest/examples/custom-backend.js';
