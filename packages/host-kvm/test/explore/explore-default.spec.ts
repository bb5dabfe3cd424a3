import { exploreSuite } from './explore-suite.js';

// The default backend: merged KVM's choices (4K private memory, local fault retry, mmu_lock, mirror S-EPT).
exploreSuite('default KVM', {});
