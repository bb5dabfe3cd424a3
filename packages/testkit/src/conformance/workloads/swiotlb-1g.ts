import { formatBytes, GIB, MIB, PAGE, type Workload } from './workload.js';

/** A swiotlb-sized bounce buffer: `amount` bytes at 1 GiB made shared, then private again (accepted). */
export const swiotlb1g: Workload = {
  name: 'swiotlb-1g',
  description: '1 GiB at GPA 1 GiB to shared and back to private (a swiotlb bounce buffer)',
  defaultAmount: GIB,
  conformanceAmount: 16 * MIB,
  usesMapGpa: true,
  describeAmount: (amount) => formatBytes(amount),
  memoryBytes: (amount) => GIB + amount,
  conversions: () => 2,
  pagesTouched: (amount) => (2 * amount) / PAGE,
  async run(context, amount) {
    await context.convert(GIB, amount, true);
    await context.convert(GIB, amount, false);
  },
};
