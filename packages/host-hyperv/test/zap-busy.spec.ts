import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  assertInvariants,
  checkVmmView,
  isStatus,
  MemoryTraceSink,
  SteppingScheduler,
  TdvmcallStatus,
  TdxModule,
  TdxStatus,
  type TraceEvent,
  traceStatusText,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { HypervVmm } from '../src/index.js';

// A zap SEAMCALL that gets OPERAND_BUSY (probe finding 3: it was skipped, and the frame mapped shared anyway while
// the private leaf stayed). The contention comes from a real flow parked at the module's scheduler port, never from
// a faked status.

const PAGE = 0x1000;
const S = 2 ** 47; // shared bit, GPAW 48
const X = 0x10_0000;

/** A trace sink that can act on an event as it is recorded (inside the SEAMCALL that produced it). */
class HookedTrace extends MemoryTraceSink {
  onRecord: ((event: TraceEvent) => void) | undefined;

  override record(event: TraceEvent): void {
    super.record(event);
    this.onRecord?.(event);
  }

  /** `leaf status` of every SEAMCALL since event `from` but TDH.VP.ENTER. */
  seamcalls(from: number): string[] {
    return this.events
      .slice(from)
      .flatMap((e) =>
        e.kind === 'seamcall' && e.leaf !== 'TDH.VP.ENTER' ? [`${e.leaf} ${traceStatusText(e)}`] : [],
      );
  }
}

async function setup() {
  const scheduler = new SteppingScheduler();
  const trace = new HookedTrace();
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } }, { scheduler, trace });
  const vmm = await HypervVmm.create(module, {}, { gpaw: 48, vcpus: 2 });
  vmm.run();
  // vCPU 0 accepts X: the EPT violation has Hyper-V AUG it, the re-executed ACCEPT succeeds.
  expect(await tdgAccept(vmm.td.guest(0), X, 0)).toBe(TdxStatus.SUCCESS);
  return { module, vmm, scheduler, trace };
}

/** The frame at X is never mapped private and shared at once, and Hyper-V's view is the module's truth. */
function consistent(module: TdxModule, vmm: HypervVmm): void {
  assertInvariants(module);
  expect(checkVmmView(module, vmm.td.tdr, vmm.view())).toEqual([]);
}

describe('Hyper-V: a zap SEAMCALL that gets OPERAND_BUSY', () => {
  it('BLOCK meets a guest ACCEPT holding the entry: BUSY, kick, retry, which succeeds once the ACCEPT has ended', async () => {
    const { module, vmm, scheduler, trace } = await setup();
    // vCPU 1 accepts X again and is parked holding X's entry lock.
    scheduler.pauseWhen((p) => p.flow === 'TDG.MEM.PAGE.ACCEPT' && p.gpa === X);
    const accepted = tdgAccept(vmm.td.guest(1), X, 0);
    await scheduler.waitForParked();
    trace.onRecord = (e) => {
      if (
        e.kind === 'seamcall' &&
        e.leaf === 'TDH.MEM.RANGE.BLOCK' &&
        isStatus(e.status, TdxStatus.OPERAND_BUSY)
      )
        scheduler.releaseAll();
    };
    const from = trace.events.length;
    const reply = await vmcallMapGpa(vmm.td.guest(0), BigInt(S + X), BigInt(PAGE));
    expect(reply.r10).toBe(TdvmcallStatus.SUCCESS);
    expect(isStatus(await accepted, TdxStatus.PAGE_ALREADY_ACCEPTED)).toBe(true);
    expect(trace.seamcalls(from)).toEqual([
      'TDH.MEM.RANGE.BLOCK OPERAND_BUSY(RCX) 0x8000020000000001',
      'TDH.MEM.RANGE.BLOCK SUCCESS 0x0000000000000000',
      'TDH.MEM.TRACK SUCCESS 0x0000000000000000',
      'TDH.MEM.PAGE.REMOVE SUCCESS 0x0000000000000000',
    ]);
    expect(module.privatePage(vmm.td.tdr, X).state).toBe('FREE');
    expect(vmm.tables.shared.lookup(X)).toBeDefined();
    consistent(module, vmm);
  });

  it('a BLOCK still BUSY after its retries leaves the page private and unmapped on the shared side: RETRY from it, and the next call converts it', async () => {
    const { module, vmm, scheduler, trace } = await setup();
    // A host SEAMCALL outside the backend (a TDH.MEM.SEPT.ADD far away) parked holding the SEPT tree: no kick helps.
    scheduler.pauseWhen((p) => p.flow === 'TDH.MEM.SEPT.ADD');
    const table = vmm.td.allocator.alloc4k();
    const far = 2 ** 40;
    const added = vmm.td.host.septAdd(vmm.td.tdr, far, 3, table);
    await scheduler.waitForParked();
    const from = trace.events.length;
    const reply = await vmcallMapGpa(vmm.td.guest(0), BigInt(S + X), BigInt(2 * PAGE));
    expect({ r10: reply.r10, r11: reply.r11 }).toEqual({ r10: TdvmcallStatus.RETRY, r11: BigInt(S + X) });
    expect(trace.seamcalls(from)).toEqual(
      Array(4).fill('TDH.MEM.RANGE.BLOCK OPERAND_BUSY(SEPT_TREE) 0x8000020000000092'),
    );
    expect(vmm.counters.shortChunks).toBe(1);
    // Nothing was mapped shared: the page is still the guest's private page.
    expect(vmm.tables.shared.lookup(X)).toBeUndefined();
    expect(module.privatePage(vmm.td.tdr, X).state).toBe('MAPPED');
    // (The invariants wait for quiescence: the parked SEAMCALL holds its locks.)
    expect(checkVmmView(module, vmm.td.tdr, vmm.view())).toEqual([]);
    scheduler.releaseAll();
    expect((await added).status).toBe(TdxStatus.SUCCESS);
    const again = await vmcallMapGpa(vmm.td.guest(0), BigInt(S + X), BigInt(2 * PAGE));
    expect(again.r10).toBe(TdvmcallStatus.SUCCESS);
    expect(module.privatePage(vmm.td.tdr, X).state).toBe('FREE');
    expect(vmm.tables.shared.lookup(X)).toBeDefined();
    consistent(module, vmm);
  });
});
