import { assertInvariants, buildTd, MemoryTraceSink, sharedBit, TdxIds, tdxModule } from '@tdxsim/tdx-module';
import { Container } from 'inversify';
import { describe, expect, it } from 'vitest';
import { GuestError, GuestIds, guestModule, guestPresets, TdGuest } from '../src/index.js';
import { TestVmm } from './test-vmm.js';

const K4 = 4096;
const MIB = 2 ** 20;

/** A container with tdxModule() and guestModule(), a TD built on its module and the TestVmm running it. */
async function wire(policy: 'linux' | 'edk2', trace?: MemoryTraceSink) {
  const container = new Container();
  container.load(
    tdxModule({
      module: { tdmr: { base: 2 ** 36, size: 2 ** 32 } },
      ...(trace === undefined ? {} : { trace }),
    }),
    guestModule({ memoryBytes: 8 * MIB, policy }),
  );
  const module = container.get(TdxIds.Module);
  const td = await buildTd(module);
  const vmm = new TestVmm(module, td, { chunkPages: 4 });
  td.run(vmm);
  container.bind(GuestIds.Cpu).toConstantValue(td.guest(0));
  return { container, module, td, vmm };
}

describe('guestModule() with tdxModule() in one container', () => {
  it('resolves a booted TdGuest with the preset, as a singleton', async () => {
    const { container, module, td } = await wire('edk2');
    const guest = await container.getAsync(GuestIds.Guest);
    expect(guest).toBeInstanceOf(TdGuest);
    expect(guest.policy).toEqual(guestPresets.edk2);
    expect(guest.gpaw).toBe(48);
    expect(guest.ledger.memoryBytes).toBe(8 * MIB);
    expect(await container.getAsync(GuestIds.Guest)).toBe(guest);
    expect(await guest.setShared(MIB, 8 * K4)).toEqual({ kind: 'ok', mapGpaCalls: 2, acceptCalls: 0 });
    expect(guest.check(module, td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it("the trace sink bound in TdxIds.Trace receives the guest's MapGPA notes, one per hypercall and the count", async () => {
    const trace = new MemoryTraceSink();
    const { container, module, td } = await wire('linux', trace);
    const guest = await container.getAsync(GuestIds.Guest);
    trace.clear();
    expect(await guest.setShared(MIB, 8 * K4)).toEqual({ kind: 'ok', mapGpaCalls: 2, acceptCalls: 0 });
    const shared = BigInt(sharedBit(48));
    const notes = trace.events.filter((e) => e.kind === 'note' && e.source === 'guest');
    expect(notes).toHaveLength(3);
    const hex = (value: bigint | number): string => `0x${value.toString(16)}`;
    expect(notes.map((e) => (e.kind === 'note' ? e.text : ''))).toEqual([
      `MapGPA r12=${hex(BigInt(MIB) | shared)} r13=${hex(8 * K4)} -> RETRY r11=${hex(BigInt(MIB + 4 * K4) | shared)}`,
      `MapGPA r12=${hex(BigInt(MIB + 4 * K4) | shared)} r13=${hex(4 * K4)} -> SUCCESS r11=0x0`,
      `operation ${hex(MIB)}..${hex(MIB + 8 * K4)} to shared: MapGPA ok after 2 hypercalls (no storm guard)`,
    ]);
    // The module's own records of the same TDCALLs go to the same sink.
    expect(trace.events.some((e) => e.kind === 'tdcall')).toBe(true);
    expect(guest.check(module, td.tdr)).toEqual([]);
  });

  it('boots without a trace sink bound (guestModule alone, Cpu bound by hand)', async () => {
    const { td } = await wire('linux');
    const container = new Container();
    container.load(guestModule({ memoryBytes: 4 * MIB }));
    container.bind(GuestIds.Cpu).toConstantValue(td.guest(0));
    const guest = await container.getAsync(GuestIds.Guest);
    expect(guest.policy).toEqual(guestPresets.strict);
    expect(guest.ledger.memoryBytes).toBe(4 * MIB);
  });

  it('rejects an unknown option (including trace, which comes from the container) with a typed error', () => {
    for (const key of ['trace', 'memorybytes']) {
      let error: unknown;
      try {
        guestModule({ memoryBytes: MIB, [key]: 1 } as never);
      } catch (caught) {
        error = caught;
      }
      expect(GuestError.is(error) && [error.code, error.argument]).toEqual(['UNKNOWN_OPTION', key]);
    }
  });
});
