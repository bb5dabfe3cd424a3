/**
 * The handle buildTd returns (filled by assignments, for V8: see builtTdHandle) is the plain object it was as a
 * literal: its fields in the same order, Object's prototype, the TD's values, and guest/run that work.
 */
import { expect, it } from 'vitest';
import { buildTd, HostPageAllocator, TdxModule, TdxSimError } from '../../src/index.js';

it("buildTd's handle: a plain object with the fields tdr, tdvprs, gpaw, pwl, host, allocator, guest, run in that order", async () => {
  const module = new TdxModule({ tdmr: { base: 2 ** 32, size: 2 ** 32 } });
  const td = await buildTd(module, { vcpus: 2, gpaw: 48 });
  expect(Object.getPrototypeOf(td)).toBe(Object.prototype);
  expect(Object.keys(td)).toEqual(['tdr', 'tdvprs', 'gpaw', 'pwl', 'host', 'allocator', 'guest', 'run']);
  expect(Object.values(Object.getOwnPropertyDescriptors(td)).every((d) => d.writable && d.enumerable)).toBe(
    true,
  );
  expect([td.tdvprs.length, td.gpaw, td.pwl]).toEqual([2, 48, 3]);
  expect(td.allocator).toBeInstanceOf(HostPageAllocator);
  expect(td.guest(1)).toBeDefined();
  expect(() => td.guest(2)).toThrow(TdxSimError);
});
