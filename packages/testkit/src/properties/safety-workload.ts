/** One thing the guest does in a safety workload. */
export type WorkloadStep =
  | { readonly op: 'to-shared' | 'to-private'; readonly startPage: number; readonly pages: number }
  | { readonly op: 'accept-all' };

/** A small guest workload: RAM size in 4K pages and the conversions to run, in order. */
export interface SafetyWorkload {
  readonly memoryPages: number;
  readonly steps: readonly WorkloadStep[];
}

/**
 * The default safety workload (64 pages of RAM): accept a few pages (a secret is kept in them), a 16-page buffer
 * to shared and half of it back, two one-page DMA-like conversions, then more to shared and a partial way back.
 * Small on purpose: the preset × hostile-backend matrix runs it 162 times.
 */
export const DEFAULT_SAFETY_WORKLOAD: SafetyWorkload = {
  memoryPages: 64,
  steps: [
    { op: 'to-private', startPage: 0, pages: 4 },
    { op: 'to-shared', startPage: 8, pages: 16 },
    { op: 'to-private', startPage: 8, pages: 8 },
    { op: 'to-shared', startPage: 40, pages: 1 },
    { op: 'to-private', startPage: 40, pages: 1 },
    { op: 'to-shared', startPage: 48, pages: 8 },
    { op: 'to-private', startPage: 20, pages: 4 },
    { op: 'to-private', startPage: 4, pages: 4 },
  ],
};
