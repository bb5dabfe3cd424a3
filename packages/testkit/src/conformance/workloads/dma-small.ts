import { KIB, MIB, PAGE, type Workload } from './workload.js';

/** Where the DMA buffers live: 16 MiB at 32 MiB. */
const POOL_START = 32 * MIB;
const POOL_SIZE = 16 * MIB;

/** Many small DMA buffers: 4–64 KiB made shared for a device, then private again. */
export const dmaSmall: Workload = {
  name: 'dma-small',
  description: 'many 4–64 KiB buffers to shared and back (driver DMA without swiotlb)',
  defaultAmount: 100,
  conformanceAmount: 100,
  usesMapGpa: true,
  describeAmount: (amount) => `${amount} buffers`,
  memoryBytes: () => 64 * MIB,
  conversions: (amount) => 2 * amount,
  pagesTouched: (amount) => (2 * amount * 64 * KIB) / PAGE,
  async run(context, amount) {
    const { rng } = context;
    for (let i = 0; i < amount; i++) {
      const size = rng.int(1, (64 * KIB) / PAGE) * PAGE;
      const start = POOL_START + rng.int(0, (POOL_SIZE - size) / PAGE) * PAGE;
      await context.convert(start, size, true);
      await context.convert(start, size, false);
    }
  },
};
