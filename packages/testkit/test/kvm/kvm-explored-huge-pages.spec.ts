import { exploreKvm } from './kvm-explore-suite.js';

// With huge pages: 2M leaves where the guest accepts whole 2M blocks, split by DEMOTE on a partial conversion.
exploreKvm('KVM with hugePages', { hugePages: true });
