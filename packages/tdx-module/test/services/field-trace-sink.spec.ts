import { describe, expect, it } from 'vitest';
import {
  buildTd,
  encodeLeaf,
  type FieldTraceSink,
  MemoryTraceSink,
  makeGprs,
  seamcallTraceEvent,
  TdcallLeaf,
  TdxModule,
  type TraceEvent,
  tdcallTraceEvent,
  tdExitTraceEvent,
} from '../../src/index.js';
import { LazyAugVmm, TEST_TDMR } from '../harness.js';

const ACCEPT = encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT);

/** A sink taking the module's calls as fields: it keeps the event each stands for, and counts which way it came. */
class FieldsSink implements FieldTraceSink {
  readonly events: TraceEvent[] = [];
  readonly ways = { fields: 0, record: 0 };
  constructor(readonly enabled: boolean) {}
  record(event: TraceEvent): void {
    this.ways.record++;
    this.events.push(event);
  }
  seamcallFields(
    time: number,
    leaf: string,
    rcx: bigint,
    rdx: bigint,
    r8: bigint,
    r9: bigint,
    status: bigint,
  ): void {
    this.ways.fields++;
    this.events.push(seamcallTraceEvent(time, leaf, rcx, rdx, r8, r9, status));
  }
  tdcallFields(
    time: number,
    vcpu: number,
    leaf: string,
    regs: readonly bigint[] | bigint,
    status: bigint,
  ): void {
    this.ways.fields++;
    this.events.push(tdcallTraceEvent(time, vcpu, leaf, regs, status));
  }
  tdExitFields(time: number, vcpu: number, reason: string, regs: readonly bigint[]): void {
    this.ways.fields++;
    this.events.push(tdExitTraceEvent(time, vcpu, reason, regs));
  }
}

/** A TD built, then pages accepted through EPT-violation exits (a lazy AUG each), by both TDCALL paths. */
async function acceptSome(trace: MemoryTraceSink | FieldsSink): Promise<void> {
  const module = new TdxModule({ tdmr: TEST_TDMR }, { trace });
  const td = await buildTd(module, {});
  td.run(new LazyAugVmm(module, td));
  const cpu = td.guest(0);
  for (let page = 0; page < 3; page++) {
    const gpa = 0x4000_0000 + page * 0x1000;
    await cpu.tdcall(ACCEPT, makeGprs({ rcx: BigInt(gpa) }));
    await cpu.acceptStatus(BigInt(gpa + 0x20_0000));
  }
  // A failed ACCEPT (unaligned): a failure status traced as well.
  await cpu.tdcall(ACCEPT, makeGprs({ rcx: 0x4000_0800n }));
}

describe('FieldTraceSink (internal): the module gives its calls as fields to a sink that takes them', () => {
  it('the events those fields stand for are those a plain sink records, in the same order and times', async () => {
    const plain = new MemoryTraceSink();
    await acceptSome(plain);
    const fields = new FieldsSink(true);
    await acceptSome(fields);
    expect(fields.events).toEqual(plain.events);
    // SEAMCALLs, TDCALLs and TD exits came as fields; nothing else happened in this run.
    expect(new Set(plain.events.map((e) => e.kind))).toEqual(new Set(['seamcall', 'tdcall', 'td-exit']));
    expect(fields.ways).toEqual({ fields: plain.events.length, record: 0 });
  });

  it('a disabled sink gets nothing either way', async () => {
    const off = new FieldsSink(false);
    await acceptSome(off);
    expect(off.ways).toEqual({ fields: 0, record: 0 });
  });
});
