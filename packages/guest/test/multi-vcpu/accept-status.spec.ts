import {
  buildTd,
  type ControlledScheduler,
  encodeLeaf,
  ensureSeptTables,
  GuestCpu,
  MemoryTraceSink,
  makeGprs,
  RandomScheduler,
  Reg,
  SeamcallLeaf,
  TdxModule,
  TdxStatus,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import type { AcceptPolicy } from '../../src/accept/accept-policy.js';
import { acceptPresets } from '../../src/accept/accept-presets.js';
import { runAcceptRange } from '../../src/accept/accept-range.js';
import { CpuPort } from '../../src/concurrency/cpu-port.js';

const EPT_VIOLATION = 48n;
const AUG = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG);
const MIB2 = 2 ** 21;

/** What one run of the accept loops looks like. */
interface Setup {
  /** The ranges accepted, [start, end) each, all at once: range i on vCPU i. */
  readonly ranges: readonly (readonly [number, number])[];
  readonly policy?: AcceptPolicy;
  /** A deciding scheduler, made afresh per run (the same seed both ways), disposed at the end of the run. */
  readonly scheduler?: () => ControlledScheduler;
  /** 2M GPAs AUGed at 2M before the loops start, with an interrupt posted to vCPU 0 (interrupts disabled). */
  readonly aug2m?: readonly number[];
}

/**
 * The ranges accepted by the accept loops through vCPU ports, each page not AUGed before AUGed at 4K on its
 * EPT-violation exit (as KVM does), with a task counting microtask turns alongside: the outcomes, the module's trace,
 * how many turns the loops took, and how many ACCEPTs the module answered with RAX alone (`acceptStatus` answered)
 * and declined (it answered undefined). `wrapped`: every vCPU's `tdcall` is a pass-through wrapper, so every TDCALL
 * goes through it.
 */
async function acceptThroughPorts(setup: Setup, wrapped: boolean) {
  const scheduler = setup.scheduler?.();
  try {
    return await acceptThroughPortsOn(setup, wrapped, scheduler);
  } finally {
    // Its thread tracking (an AsyncLocalStorage) off: left on, it stays on in this test worker for every file after
    // this one (isolate: false) and makes each of their promises dearer (issue 14).
    scheduler?.dispose();
  }
}

async function acceptThroughPortsOn(
  setup: Setup,
  wrapped: boolean,
  scheduler: ControlledScheduler | undefined,
) {
  const trace = new MemoryTraceSink();
  const module = new TdxModule(
    { tdmr: { base: 2 ** 40, size: 2 ** 30 } },
    scheduler === undefined ? { trace } : { trace, scheduler },
  );
  const td = await buildTd(module, { vcpus: setup.ranges.length });
  const end = Math.max(...setup.ranges.map(([, e]) => e));
  for (let gpa = 0; gpa < end; gpa += MIB2) {
    const level = setup.aug2m?.includes(gpa) ? 1 : 0;
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl);
    if (level === 1) {
      const regs = makeGprs({ rcx: BigInt(gpa) + 1n, rdx: td.tdr, r8: BigInt(td.allocator.alloc2m()) });
      expect(((await module.seamcall(AUG, regs)) as bigint[])[Reg.RAX]).toBe(0n);
    }
  }
  const augRegs = makeGprs({ rdx: td.tdr });
  // BUSY (the entry locked by another vCPU's ACCEPT, under a deciding scheduler): re-entered without it, as KVM
  // retries; the ACCEPT exits again.
  const augged = (out: Readonly<bigint[]>) => {
    const status = out[Reg.RAX] as bigint;
    // expect() only when it fails: a passing one per exit cost vitest about 8 µs of bookkeeping each (issue 14).
    if (status !== 0n && status >> 32n !== TdxStatus.OPERAND_BUSY >> 32n) expect(status).toBe(0n);
    return makeGprs();
  };
  td.run({
    onTdExit({ regs }) {
      if (regs[Reg.RAX] !== EPT_VIOLATION) return undefined;
      augRegs[Reg.RCX] = regs[Reg.R8] as bigint;
      augRegs[Reg.R8] = BigInt(td.allocator.alloc4k());
      const out = module.seamcall(AUG, augRegs);
      return out instanceof Promise ? out.then(augged) : augged(out);
    },
  });
  const cpus = setup.ranges.map((_, i) => td.guest(i));
  let answered = 0;
  let declined = 0;
  for (const cpu of cpus) {
    if (wrapped) cpu.tdcall = (rax, regs) => GuestCpu.prototype.tdcall.call(cpu, rax, regs);
    const acceptStatus = cpu.acceptStatus.bind(cpu);
    cpu.acceptStatus = (pageInfo) => {
      const answer = acceptStatus(pageInfo);
      if (answer === undefined) declined++;
      else answered++;
      return answer;
    };
  }
  const first = cpus[0] as GuestCpu;
  if (setup.aug2m !== undefined) {
    // Posted once vCPU 0 is in guest mode (its first entry made).
    await new Promise((resolve) => setImmediate(resolve));
    first.setInterruptsEnabled(false);
    module.postInterrupt(td.tdvprs[0] as number);
  }
  let turn = 0;
  // No turn counter under a deciding scheduler: it decides once the microtask queue is empty, which the counter's
  // loop would never let happen.
  let running = scheduler === undefined;
  const ticker = (async () => {
    while (running) {
      turn++;
      await null;
    }
  })();
  const policy = setup.policy ?? acceptPresets.linux;
  const outcomes = await Promise.all(
    setup.ranges.map(([start, e], i) =>
      runAcceptRange(new CpuPort(cpus[i] as GuestCpu), { start, end: e }, policy),
    ),
  );
  running = false;
  await ticker;
  // The posted interrupt (IF = 0: the ACCEPT stops for it once, not taken) is taken once interrupts are enabled.
  if (setup.aug2m !== undefined) first.setInterruptsEnabled(true);
  const interruptsTaken = first.interruptsTaken;
  return { outcomes, events: trace.events, answered, declined, turns: turn, interruptsTaken };
}

/** Runs `setup` both ways: the port's RAX-only ACCEPT, and every TDCALL through a wrapped `tdcall`. */
async function twins(setup: Setup) {
  const direct = await acceptThroughPorts(setup, false);
  const wrapped = await acceptThroughPorts(setup, true);
  expect(wrapped.outcomes).toEqual(direct.outcomes);
  expect(wrapped.events).toEqual(direct.events);
  expect(wrapped.turns).toBe(direct.turns);
  expect(wrapped.interruptsTaken).toBe(direct.interruptsTaken);
  // A wrapped tdcall is never bypassed: the port does not even ask the module.
  expect([wrapped.answered, wrapped.declined]).toEqual([0, 0]);
  return direct;
}

const tdcallsOf = (run: { outcomes: readonly { tdcalls: number }[] }) =>
  run.outcomes.reduce((sum, outcome) => sum + outcome.tdcalls, 0);
const exitsOf = (run: { events: readonly { kind: string }[] }) =>
  run.events.filter((e) => e.kind === 'td-exit').length;

describe("the accept loop's ACCEPT answered with RAX alone", () => {
  it('makes the same TDCALLs, exits and trace, in the same microtask turns, as the TDCALL through tdcall', async () => {
    const direct = await twins({ ranges: [[0, 4 * 2 ** 20]] });
    // 2 ACCEPTs at 2M (each an exit, then a size mismatch), 1,024 at 4K, 1,022 of them after an exit.
    expect(direct.outcomes).toEqual([{ kind: 'ok', tdcalls: 1026 }]);
    // Every one of them took the RAX-only path.
    expect([direct.answered, direct.declined]).toEqual([1026, 0]);
    expect(exitsOf(direct)).toBe(1024);
  });

  it('two vCPUs accepting at once: the same, each ACCEPT answered with RAX alone', async () => {
    const direct = await twins({
      ranges: [
        [0, 2 * MIB2],
        [2 * MIB2, 4 * MIB2],
      ],
    });
    expect(direct.outcomes).toEqual([
      { kind: 'ok', tdcalls: 1026 },
      { kind: 'ok', tdcalls: 1026 },
    ]);
    expect([direct.answered, direct.declined]).toEqual([2052, 0]);
    expect(exitsOf(direct)).toBe(2048);
  });

  it('a 2M ACCEPT stopped by a pending interrupt and re-executed: the same, answered with RAX alone', async () => {
    const direct = await twins({ ranges: [[0, MIB2]], aug2m: [0] });
    expect(direct.outcomes).toEqual([{ kind: 'ok', tdcalls: 1 }]);
    expect([direct.answered, direct.declined]).toEqual([1, 0]);
    expect(exitsOf(direct)).toBe(0);
    // Taken once interrupts were enabled again (the stop itself is the module's: tdcall/accept-2m-interrupt.spec.ts).
    expect(direct.interruptsTaken).toBe(1);
  });

  it('under a deciding scheduler (OPERAND_BUSY retries on one range): the module declines, the TDCALL goes through tdcall, the same', async () => {
    const direct = await twins({
      ranges: [
        [0, MIB2],
        [0, MIB2],
      ],
      policy: acceptPresets.edk2,
      scheduler: () => new RandomScheduler({ seed: 7 }),
    });
    expect(direct.answered).toBe(0);
    expect(direct.declined).toBeGreaterThan(0);
    const busy = direct.events.filter(
      (e) =>
        e.kind === 'tdcall' &&
        'status' in e &&
        BigInt(e.status as bigint) >> 32n === TdxStatus.OPERAND_BUSY >> 32n,
    );
    expect(busy.length).toBeGreaterThan(0);
    expect(tdcallsOf(direct)).toBeGreaterThan(0);
  });
});
