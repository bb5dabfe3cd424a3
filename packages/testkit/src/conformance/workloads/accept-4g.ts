import { formatBytes, GIB, MIB, PAGE, type Workload } from './workload.js';

/** Boot-time acceptance of unaccepted memory: `amount` bytes from GPA 0, in 1 GiB steps. */
export const accept4g: Workload = {
  name: 'accept-4g',
  description: 'accept 4 GiB of unaccepted private memory, 1 GiB at a time',
  defaultAmount: 4 * GIB,
  // 32 2M pages: the accept exits at 2M that a backend must answer at 2M (a 4K-only one makes the guest fall back).
  conformanceAmount: 64 * MIB,
  usesMapGpa: false,
  describeAmount: (amount) => formatBytes(amount),
  memoryBytes: (amount) => amount,
  conversions: (amount) => Math.ceil(amount / GIB),
  pagesTouched: (amount) => amount / PAGE,
  async run(context, amount) {
    // Private and unaccepted → private: the guest only accepts (no MapGPA), as a kernel does with unaccepted memory.
    for (let start = 0; start < amount; start += GIB) {
      await context.convert(start, Math.min(GIB, amount - start), false);
    }
  },
};
