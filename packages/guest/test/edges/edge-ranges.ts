import { type Gpaw, sharedBit } from '@tdxsim/tdx-module';
import { fc } from '../../../../test/property-test.js';

const PAGE = 4096;
const M2 = 512;
const G1 = 512 * 512;

/** A range of private pages, in 4K page numbers, and the TD width it is meant for. */
export interface EdgeRange {
  readonly gpaw: Gpaw;
  readonly startPage: number;
  readonly pages: number;
}

/**
 * Ranges biased to the edges of the GPA space (issue 10, "Boundaries"): from GPA 0, ending at the top of the private
 * space (so their shared alias ends at 2^GPAW), one page long, around and across 1G boundaries, above bit 47.
 * `sizes: 'small'` keeps them within a 2M block and a page; `'spans'` makes them span one to two 1G blocks and a bit
 * (each such case costs a few hundred milliseconds).
 */
export function edgeRange(
  sizes: 'small' | 'spans',
  gpaws: readonly Gpaw[] = [48, 52],
): fc.Arbitrary<EdgeRange> {
  return fc.constantFrom(...gpaws).chain((gpaw) => {
    const top = sharedBit(gpaw) / PAGE;
    const size =
      sizes === 'small'
        ? fc.constantFrom(1, 2, 3, M2 - 1, M2, M2 + 1)
        : fc
            .tuple(fc.integer({ min: 1, max: 2 }), fc.constantFrom(0, 1, M2 - 1, M2))
            .map(([n, b]) => n * G1 + b);
    const nearGiB = fc
      .tuple(fc.integer({ min: 1, max: 8 }), fc.constantFrom(-M2, -1, 0, 1, M2))
      .map(([n, d]) => n * G1 + d);
    const fromZero = size.map((pages) => ({ gpaw, startPage: 0, pages }));
    const toTop = size.map((pages) => ({ gpaw, startPage: top - pages, pages }));
    const aroundGiB = fc.tuple(nearGiB, size).map(([startPage, pages]) => ({ gpaw, startPage, pages }));
    const onePage = fc
      .constantFrom(0, 1, G1 - 1, G1, top - G1, top - 2, top - 1)
      .map((startPage) => ({ gpaw, startPage, pages: 1 }));
    if (sizes === 'spans') return fc.oneof(fromZero, toTop, aroundGiB);
    // A GPAW 52 range above 2^47 (bit 47 set in a private address) tells a hard-coded shared bit 47 apart.
    const aboveBit47 = size.map((pages) => ({
      gpaw,
      startPage: gpaw === 52 ? 2 ** 47 / PAGE + G1 : G1,
      pages,
    }));
    return fc.oneof(fromZero, toTop, aroundGiB, onePage, aboveBit47);
  });
}
