import { accept4g } from './accept-4g.js';
import { churn } from './churn.js';
import { dmaSmall } from './dma-small.js';
import { swiotlb1g } from './swiotlb-1g.js';
import type { Workload } from './workload.js';

/** Every workload of the matrix, in the order the table shows them. */
export const WORKLOADS: readonly Workload[] = [swiotlb1g, accept4g, churn, dmaSmall];
