import { formatBytes, GIB, type Workload } from './workload.js';

/** A swiotlb-sized bounce buffer: `amount` bytes at 1 GiB made shared, then private again (accepted). */
export const swiotlb1g: Workload = {
  name: 'swiotlb-1g',
  description: '1 GiB at GPA 1 GiB to shared and back to private (a swiotlb bounce buffer)',
  defaultAmount: GIB,
  usesMapGpa: true,
  describeAmount: (amount) => formatBytes(amount),
  memoryBytes: (amount) => GIB + amount,
  conversions: () => 2,
  async run(context, amount) {
    await context.convert(GIB, amount, true);
    await context.convert(GIB, amount, false);
  },
};
