import { format } from 'node:util';
import createDebug from 'debug';
import { afterEach, describe, expect, it } from 'vitest';
import {
  buildTd,
  encodeLeaf,
  type GuestCpu,
  MemoryTraceSink,
  makeGprs,
  Reg,
  type Scheduler,
  SteppingScheduler,
  TdcallLeaf,
  TdxModule,
  TdxStatus,
} from '../../src/index.js';
import { LazyAugVmm, TEST_TDMR } from '../harness.js';
import { augPage, tdvprOf, vcpuState } from './helpers.js';

const ACCEPT = encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT);
const PAGE_ALREADY_ACCEPTED_4K = 0x00000b0a00000000n;
const PAGE_SIZE_MISMATCH_2M = 0xc0000b0b00000001n;
const OPERAND_INVALID_RCX = 0xc000010000000001n;
const MIB2 = 0x20_0000;

/** A TD with one vCPU run by a lazily AUGing VMM, its module tracing into memory. */
async function running(scheduler?: Scheduler) {
  const trace = new MemoryTraceSink();
  const module = new TdxModule(
    { tdmr: TEST_TDMR },
    scheduler === undefined ? { trace } : { trace, scheduler },
  );
  const td = await buildTd(module, {});
  const vmm = new LazyAugVmm(module, td);
  td.run(vmm);
  return { module, td, vmm, trace, cpu: td.guest(0) };
}

/** RAX of the TDCALL through the public `tdcall`. */
async function viaTdcall(cpu: GuestCpu, pageInfo: bigint): Promise<bigint> {
  return (await cpu.tdcall(ACCEPT, makeGprs({ rcx: pageInfo })))[Reg.RAX] as bigint;
}

/** RAX through `acceptStatus`, which must take the TDCALL (not answer undefined). */
async function viaStatus(cpu: GuestCpu, pageInfo: bigint): Promise<bigint> {
  const answer = cpu.acceptStatus(pageInfo);
  expect(answer).toBeInstanceOf(Promise);
  return (await answer) as bigint;
}

describe('GuestCpu.acceptStatus (internal): RAX of the TDCALL, or undefined with nothing done', () => {
  it('answers what tdcall answers in RAX, outcome by outcome, each on a twin page in the same state', async () => {
    const { module, td, vmm, cpu } = await running();
    // Twins A (acceptStatus) and B (tdcall), each in a 2M region of its own.
    const a = 0x4000_0000;
    const b = a + MIB2;
    for (const gpa of [a, b]) await augPage(module, td, gpa, 0);
    const outcomes: [string, bigint, bigint][] = [];
    const both = async (what: string, offsetInfo: (base: number) => bigint) =>
      outcomes.push([what, await viaStatus(cpu, offsetInfo(a)), await viaTdcall(cpu, offsetInfo(b))]);
    // A 2M ACCEPT of a region mapped at 4K, before and after its first page is accepted.
    await both('2M on 4K', (base) => BigInt(base) + 1n);
    await both('success', (base) => BigInt(base));
    await both('already accepted', (base) => BigInt(base));
    await both('invalid level', (base) => BigInt(base) + 7n);
    await both('unaligned', (base) => BigInt(base) + 0x800n);
    // Not AUGed yet: an EPT-violation exit, the VMM AUGs, the re-executed ACCEPT succeeds.
    const exits = vmm.exits.length;
    await both('exit, then success', (base) => BigInt(base + 0x1000));
    expect(vmm.exits.length).toBe(exits + 2);
    expect(outcomes).toEqual([
      ['2M on 4K', PAGE_SIZE_MISMATCH_2M, PAGE_SIZE_MISMATCH_2M],
      ['success', TdxStatus.SUCCESS, TdxStatus.SUCCESS],
      ['already accepted', PAGE_ALREADY_ACCEPTED_4K, PAGE_ALREADY_ACCEPTED_4K],
      ['invalid level', OPERAND_INVALID_RCX, OPERAND_INVALID_RCX],
      ['unaligned', OPERAND_INVALID_RCX, OPERAND_INVALID_RCX],
      ['exit, then success', TdxStatus.SUCCESS, TdxStatus.SUCCESS],
    ]);
  });

  /** What an undefined answer must leave as it was: trace, clock and the vCPU's state. */
  function snapshot(module: TdxModule, trace: MemoryTraceSink, tdvpr: number) {
    const vcpu = vcpuState(module, tdvpr);
    return {
      events: trace.events.length,
      now: module.state.clock.now(),
      rip: vcpu.rip,
      run: vcpu.run,
      inTdcall: vcpu.inTdcall,
    };
  }

  it('a page info that is not a 64-bit value: undefined, and nothing happened', async () => {
    const { module, td, trace, cpu } = await running();
    const before = snapshot(module, trace, tdvprOf(td));
    for (const pageInfo of [-1n, 2n ** 64n, 0x4000_0000 as unknown as bigint])
      expect(cpu.acceptStatus(pageInfo)).toBeUndefined();
    expect(snapshot(module, trace, tdvprOf(td))).toEqual(before);
    // The vCPU still takes TDCALLs: the one tdcall makes of the same ACCEPT.
    expect(await viaTdcall(cpu, 2n ** 52n)).toBe(OPERAND_INVALID_RCX);
  });

  it('under a deciding scheduler (the TDCALL has a yield point): undefined, and nothing happened', async () => {
    const { module, td, trace, cpu } = await running(new SteppingScheduler());
    const gpa = 0x4000_0000;
    await augPage(module, td, gpa, 0);
    const before = snapshot(module, trace, tdvprOf(td));
    expect(cpu.acceptStatus(BigInt(gpa))).toBeUndefined();
    expect(snapshot(module, trace, tdvprOf(td))).toEqual(before);
    expect(await viaTdcall(cpu, BigInt(gpa))).toBe(TdxStatus.SUCCESS);
  });
});

describe('GuestCpu.acceptStatus (internal): the same trace as tdcall', () => {
  /** Every outcome of the ACCEPT on one fresh TD, through `accept`; answers the statuses and the trace's events. */
  async function outcomes(accept: (cpu: GuestCpu, pageInfo: bigint) => Promise<bigint>) {
    const { module, td, trace, cpu } = await running();
    const gpa = 0x4000_0000;
    await augPage(module, td, gpa, 0);
    const statuses: bigint[] = [];
    for (const pageInfo of [
      BigInt(gpa) + 1n, // 2M on a region mapped at 4K
      BigInt(gpa), // success
      BigInt(gpa), // already accepted
      BigInt(gpa) + 7n, // invalid level
      BigInt(gpa) + 0x800n, // unaligned
      BigInt(gpa + 0x1000), // not AUGed: an exit, the VMM AUGs, then success
      BigInt(gpa + MIB2 * 3 + 0x5000), // the same in another 2M region
    ])
      statuses.push(await accept(cpu, pageInfo));
    return { statuses, events: trace.events };
  }

  const saved = { log: createDebug.log, namespaces: '' };
  afterEach(() => {
    createDebug.log = saved.log;
    createDebug.disable();
    if (saved.namespaces !== '') createDebug.enable(saved.namespaces);
  });

  /** The `tdxsim:module:tdcall` debug lines `run` logs, with the statuses and events it answers. */
  async function logged<T>(run: () => Promise<T>): Promise<T & { lines: string[] }> {
    saved.namespaces = createDebug.disable();
    const lines: string[] = [];
    createDebug.log = (...args: unknown[]) => {
      // The time a line starts with (or its +Nms offset on a terminal) differs between runs; the rest must not.
      lines.push(
        format(...args)
          .replace(/^\S+Z /, '')
          .replace(/ \+\d+m?s$/, ''),
      );
    };
    createDebug.enable('tdxsim:module:tdcall');
    const answer = await run();
    createDebug.disable();
    return { ...answer, lines };
  }

  it('records the same events (RCX and the other registers of each TDCALL, times, exits) and statuses', async () => {
    const viaRax = await outcomes(viaStatus);
    const viaFile = await outcomes(viaTdcall);
    // One event per TDCALL (an ACCEPT that exits is one TDCALL, traced as it completes), one per exit.
    expect(viaRax.events.filter((event) => event.kind === 'tdcall')).toHaveLength(7);
    expect(viaRax.events.filter((event) => event.kind === 'td-exit')).toHaveLength(2);
    expect(viaRax).toEqual(viaFile);
  });

  it('logs the same debug lines (each TDCALL with its registers and status)', async () => {
    const viaRax = await logged(() => outcomes(viaStatus));
    const viaFile = await logged(() => outcomes(viaTdcall));
    expect(viaRax.lines).toHaveLength(7);
    expect(viaRax.lines).toEqual(viaFile.lines);
  });
});
