import { SteppingScheduler, TdxModule } from '@tdxsim/tdx-module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MmuLock } from '../src/index.js';

const TDR = 2 ** 36;
const module = () => new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });

describe('MmuLock: KVM’s mmu_lock', () => {
  it('uncontended, under the run-to-completion scheduler, taking it returns no promise', () => {
    const lock = new MmuLock(module(), TDR, 'rwlock');
    expect(lock.read(0)).toBeUndefined();
    expect(lock.read(0)).toBeUndefined();
    expect(lock.readers).toBe(2);
    lock.releaseRead();
    lock.releaseRead();
    expect(lock.write(0)).toBeUndefined();
    expect(lock.writer).toBe(true);
    lock.releaseWrite();
  });

  it('readers share it, a writer waits for them and holds back later readers (queued, in order)', async () => {
    const lock = new MmuLock(module(), TDR, 'rwlock');
    const order: string[] = [];
    expect(lock.read(0)).toBeUndefined();
    const writer = lock.write(0)?.then(() => order.push('writer'));
    const reader = lock.read(0)?.then(() => order.push('late reader'));
    expect(writer).toBeDefined();
    expect(reader).toBeDefined();
    expect(lock.waiting).toBe(2);
    await Promise.resolve();
    expect(order).toEqual([]);
    lock.releaseRead();
    await writer;
    expect(order).toEqual(['writer']);
    expect(lock.readers).toBe(0);
    lock.releaseWrite();
    await reader;
    expect(order).toEqual(['writer', 'late reader']);
    expect(lock.readers).toBe(1);
    lock.releaseRead();
  });

  it('releasing what is not held is a bug of the backend', () => {
    const lock = new MmuLock(module(), TDR, 'rwlock');
    expect(() => lock.releaseRead()).toThrow(/not held/);
    expect(() => lock.releaseWrite()).toThrow(/not held/);
  });

  it("'none' is no lock: every taker goes on at once, readers and writers together", () => {
    const lock = new MmuLock(module(), TDR, 'none');
    expect(lock.write(0)).toBeUndefined();
    expect(lock.write(0)).toBeUndefined();
    expect(lock.read(0)).toBeUndefined();
    lock.releaseWrite();
    lock.releaseRead();
  });

  it('taking it is a yield point (flow kvm.mmu_lock); a retry may skip it', async () => {
    const scheduler = new SteppingScheduler((p) => p.flow === 'kvm.mmu_lock');
    const m = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } }, { scheduler });
    const lock = new MmuLock(m, TDR, 'rwlock');
    const taken = lock.write(0x5000);
    expect(scheduler.parked).toEqual([{ flow: 'kvm.mmu_lock', step: 'write', tdr: TDR, gpa: 0x5000 }]);
    expect(lock.writer).toBe(false);
    expect(lock.read(0x6000, false)).toBeUndefined();
    lock.releaseRead();
    scheduler.releaseAll();
    await taken;
    expect(lock.writer).toBe(true);
  });

  it('property: any interleaving of takes and releases keeps it exclusive for writers and grants in order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { minLength: 1, maxLength: 30 }), async (writes) => {
        const lock = new MmuLock(module(), TDR, 'rwlock');
        const granted: number[] = [];
        const holders = new Set<number>();
        const done = writes.map(async (write, id) => {
          const wait = write ? lock.write(0) : lock.read(0);
          if (wait !== undefined) await wait;
          granted.push(id);
          holders.add(id);
          // While held: a writer is alone; readers never overlap a writer.
          const writers = [...holders].filter((h) => writes[h]);
          expect(writers.length === 0 || holders.size === 1).toBe(true);
          await Promise.resolve();
          await Promise.resolve();
          holders.delete(id);
          if (write) lock.releaseWrite();
          else lock.releaseRead();
        });
        await Promise.all(done);
        expect(granted).toEqual(writes.map((_w, id) => id));
        expect(lock.readers + lock.waiting).toBe(0);
        expect(lock.writer).toBe(false);
      }),
      { numRuns: 200, seed: 13 },
    );
  });
});
