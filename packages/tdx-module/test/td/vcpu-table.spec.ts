/**
 * VcpuTable.byValue (TDH.VP.ENTER's lookup by TDVPR register value, which remembers the answers for the values it was
 * asked since the table last changed) against a plain Map lookup of `Number(value)`: random sequences of lookups of
 * registered, unregistered and out-of-range values (more distinct values than it remembers), interleaved with vCPUs
 * added, removed, replaced under the same TDVPR and the whole table cleared and refilled (a checkpoint restore). Every
 * answer must be the Map's. And what it remembers keeps nothing alive once the table changed: owners deleted, cleared
 * or replaced are collectable at once (not only after the next lookup), so a torn-down TD is not held by its vCPUs.
 */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { TdControl } from '../../src/td/td-control.js';
import { VcpuState } from '../../src/td/vcpu.js';
import { type VcpuOwner, VcpuTable } from '../../src/td/vcpu-table.js';
import { collectGarbage } from '../support/collect-garbage.js';

const BASE = 2 ** 32;
/** Twelve TDVPR addresses (above 2^31, as in the default TDMR), more than byValue remembers. */
const ADDRESSES = Array.from({ length: 12 }, (_, i) => BASE + i * 4096);

type Step =
  | { readonly kind: 'lookup'; readonly value: bigint }
  | { readonly kind: 'add'; readonly at: number }
  | { readonly kind: 'remove'; readonly at: number }
  | { readonly kind: 'refill'; readonly keep: readonly boolean[] };

const value = fc.oneof(
  fc.constantFrom(...ADDRESSES).map((a) => BigInt(a)),
  fc.constantFrom(0n, 1n, BigInt(BASE + 1), 2n ** 64n - 1n, 2n ** 53n + 4096n),
);
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: value.map((v) => ({ kind: 'lookup', value: v }) as const) },
  { weight: 2, arbitrary: fc.nat(11).map((at) => ({ kind: 'add', at }) as const) },
  { weight: 1, arbitrary: fc.nat(11).map((at) => ({ kind: 'remove', at }) as const) },
  {
    weight: 1,
    arbitrary: fc
      .array(fc.boolean(), { minLength: 12, maxLength: 12 })
      .map((keep) => ({ kind: 'refill', keep }) as const),
  },
);

function owner(tdvpr: number, serial: number): VcpuOwner {
  return { td: new TdControl(BASE * 2 + serial * 4096, 1), vcpu: new VcpuState(tdvpr, serial) };
}

test('byValue answers what a Map lookup of Number(value) answers, as vCPUs come and go', () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 200 }), (steps) => {
      const table = new VcpuTable();
      const plain = new Map<number, VcpuOwner>();
      let serial = 0;
      for (const s of steps) {
        if (s.kind === 'lookup') {
          expect(table.byValue(s.value)).toBe(plain.get(Number(s.value)));
        } else if (s.kind === 'add') {
          const address = ADDRESSES[s.at] as number;
          const made = owner(address, serial++);
          table.set(address, made);
          plain.set(address, made);
        } else if (s.kind === 'remove') {
          const address = ADDRESSES[s.at] as number;
          expect(table.delete(address)).toBe(plain.delete(address));
        } else {
          const kept = [...plain].filter((_, i) => s.keep[i] === true);
          table.clear();
          plain.clear();
          for (const [address, o] of kept) {
            // A restore puts copies in: new owners under the same TDVPRs.
            const copy = owner(address, serial++);
            table.set(address, copy);
            plain.set(address, copy);
            expect(o).not.toBe(copy);
          }
        }
      }
    }),
  );
});

test('a table made from entries (the Map constructor calls set before its fields exist) answers byValue', () => {
  const first = owner(ADDRESSES[0] as number, 0);
  const table = new VcpuTable([[ADDRESSES[0] as number, first]]);
  expect(table.byValue(BigInt(ADDRESSES[0] as number))).toBe(first);
  const second = owner(ADDRESSES[0] as number, 1);
  table.set(ADDRESSES[0] as number, second);
  expect(table.byValue(BigInt(ADDRESSES[0] as number))).toBe(second);
});

/**
 * Fills `table` with owners under the first `count` addresses and looks each up by value; returns weak references to
 * them (made here, so that no local of the caller keeps them).
 */
function rememberedOwners(table: VcpuTable, count: number): WeakRef<VcpuOwner>[] {
  const refs: WeakRef<VcpuOwner>[] = [];
  for (let i = 0; i < count; i++) {
    const address = ADDRESSES[i] as number;
    const made = owner(address, i);
    table.set(address, made);
    refs.push(new WeakRef(made));
  }
  for (let i = 0; i < count; i++) expect(table.byValue(BigInt(ADDRESSES[i] as number))).toBeDefined();
  return refs;
}

const REMEMBERED_ADDRESSES = ADDRESSES.slice(0, 4);

test.each([
  [
    'deleted',
    (table: VcpuTable) => {
      for (const address of REMEMBERED_ADDRESSES) table.delete(address);
    },
  ],
  ['cleared', (table: VcpuTable) => table.clear()],
  [
    'replaced under their TDVPRs',
    (table: VcpuTable) => {
      for (const [i, address] of REMEMBERED_ADDRESSES.entries()) table.set(address, owner(address, 10 + i));
    },
  ],
])('owners %s are not kept alive by the lookups the table remembers', async (_, change) => {
  const gc = collectGarbage();
  const table = new VcpuTable();
  const refs = rememberedOwners(table, REMEMBERED_ADDRESSES.length);
  change(table);
  // A weak reference made in this job keeps its target until the job ends.
  await new Promise<void>((resolve) => setImmediate(resolve));
  gc();
  expect(refs.map((ref) => ref.deref())).toEqual([undefined, undefined, undefined, undefined]);
  expect(table.byValue(BigInt(ADDRESSES[0] as number))).toBe(table.get(ADDRESSES[0] as number));
});
