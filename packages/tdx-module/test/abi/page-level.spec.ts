import { describe, expect, it } from 'vitest';
import {
  levelLabel,
  PAGE_SIZE_1G,
  PAGE_SIZE_2M,
  PAGE_SIZE_4K,
  PageLevel,
  pageSizeOf,
  pagesAtLevel,
} from '../../src/index.js';

// Reference tdx-module.md §0 (levels) and §4.1 (page size = 4 KiB << (9 × level)).
describe('page levels (reference §0, §4.1)', () => {
  it('numbers the levels 0 = 4K, 1 = 2M, 2 = 1G, 3 = 512G, 4 = PML5', () => {
    expect(PageLevel).toEqual({ L4K: 0, L2M: 1, L1G: 2, L512G: 3, L256T: 4 });
  });

  it('has the page-size constants 4 KiB, 2 MiB, 1 GiB', () => {
    expect(PAGE_SIZE_4K).toBe(4096);
    expect(PAGE_SIZE_2M).toBe(2097152);
    expect(PAGE_SIZE_1G).toBe(1073741824);
  });

  it.each([
    [0, 0x1000, 1, '4K'],
    [1, 0x20_0000, 512, '2M'],
    [2, 0x4000_0000, 262144, '1G'],
    [3, 0x80_0000_0000, 134217728, '512G'],
    [4, 0x1_0000_0000_0000, 68719476736, '256T'],
  ])('level %i: %i bytes, %i 4K pages, label %s', (level, size, pages, label) => {
    expect(pageSizeOf(level)).toBe(size);
    expect(pagesAtLevel(level)).toBe(pages);
    expect(levelLabel(level)).toBe(label);
  });

  it('labels an out-of-range level by number', () => {
    expect(levelLabel(5)).toBe('level 5');
    expect(levelLabel(7)).toBe('level 7');
  });
});
