import { exploreSuite } from './explore-suite.js';

// With huge pages: 2M leaves where the guest accepts whole 2M blocks, split by DEMOTE on a partial conversion.
exploreSuite('KVM with hugePages', { hugePages: true });
