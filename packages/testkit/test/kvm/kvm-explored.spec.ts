import { exploreKvm } from './kvm-explore-suite.js';

// The default KVM backend: merged KVM's choices (4K private memory, local fault retry, mmu_lock, mirror S-EPT).
exploreKvm('default KVM', {});
