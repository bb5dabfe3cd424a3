// my-vmm.conformance.spec.ts
import { kvmVmm } from '@tdxsim/host-kvm';
import { vmmConformance } from '@tdxsim/testkit/vitest';
import { MyVmm } from './my-vmm.js';

vmmConformance(MyVmm); // describe "VMM conformance: MyVmm", one test per rule
vmmConformance(kvmVmm({ pendingEventRate: 0.5 }), { name: 'KVM with pending events' });
