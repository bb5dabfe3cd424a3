import { TdGuest } from '@tdxsim/guest';
import { composeTd } from '@tdxsim/tdx-module';
import MyVmm from './my-vmm.js';

const { guest } = await composeTd({
  vmm: MyVmm,
  guest: (cpu, trace) => TdGuest.boot(cpu, { memoryBytes: 2 ** 24, policy: 'strict', trace }),
  build: { vcpus: 2 },
});
console.log((await guest.setShared(0x100000, 0x400000)).kind); // ok
