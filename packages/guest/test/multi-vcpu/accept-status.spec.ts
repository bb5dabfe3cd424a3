import {
  buildTd,
  encodeLeaf,
  ensureSeptTables,
  GuestCpu,
  MemoryTraceSink,
  makeGprs,
  Reg,
  SeamcallLeaf,
  TdxModule,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { acceptPresets } from '../../src/accept/accept-presets.js';
import { runAcceptRange } from '../../src/accept/accept-range.js';
import { CpuPort } from '../../src/concurrency/cpu-port.js';

const EPT_VIOLATION = 48n;
const AUG = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG);

/**
 * 4 MiB accepted by the linux loop through a vCPU port, each page AUGed at 4K on its EPT-violation exit (as KVM does),
 * with a task counting microtask turns alongside: the module's trace, how many turns the loop took, and how many
 * accepts went straight to the module (`acceptStatus`). `wrapped`: the vCPU's `tdcall` is a pass-through wrapper,
 * so every TDCALL goes through it.
 */
async function acceptThroughPort(wrapped: boolean) {
  const trace = new MemoryTraceSink();
  const module = new TdxModule({ tdmr: { base: 2 ** 40, size: 2 ** 30 } }, { trace });
  const td = await buildTd(module, { vcpus: 1 });
  const bytes = 4 * 2 ** 20;
  for (let gpa = 0; gpa < bytes; gpa += 2 ** 21)
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
  const augRegs = makeGprs({ rdx: td.tdr });
  td.run({
    onTdExit({ regs }) {
      if (regs[Reg.RAX] !== EPT_VIOLATION) return undefined;
      augRegs[Reg.RCX] = regs[Reg.R8] as bigint;
      augRegs[Reg.R8] = BigInt(td.allocator.alloc4k());
      const out = module.seamcall(AUG, augRegs) as bigint[];
      expect(out[Reg.RAX]).toBe(0n);
      return makeGprs();
    },
  });
  const cpu = td.guest(0);
  if (wrapped) cpu.tdcall = (rax, regs) => GuestCpu.prototype.tdcall.call(cpu, rax, regs);
  let direct = 0;
  const acceptStatus = cpu.acceptStatus.bind(cpu);
  cpu.acceptStatus = (pageInfo) => {
    direct++;
    return acceptStatus(pageInfo);
  };
  let turn = 0;
  let running = true;
  const ticker = (async () => {
    while (running) {
      turn++;
      await null;
    }
  })();
  const outcome = await runAcceptRange(new CpuPort(cpu), { start: 0, end: bytes }, acceptPresets.linux);
  running = false;
  await ticker;
  return { outcome, events: trace.events, direct, turns: turn };
}

describe("the accept loop's ACCEPT answered with RAX alone", () => {
  it('makes the same TDCALLs, exits and trace, in the same microtask turns, as the TDCALL through tdcall', async () => {
    const direct = await acceptThroughPort(false);
    const wrapped = await acceptThroughPort(true);
    // 2 ACCEPTs at 2M (each an exit, then a size mismatch), 1,024 at 4K, 1,022 of them after an exit.
    expect(direct.outcome).toEqual({ kind: 'ok', tdcalls: 1026 });
    expect(wrapped.outcome).toEqual(direct.outcome);
    expect(direct.direct).toBe(1026);
    expect(wrapped.direct).toBe(0);
    expect(direct.events.filter((e) => e.kind === 'td-exit')).toHaveLength(1024);
    expect(wrapped.events).toEqual(direct.events);
    expect(wrapped.turns).toBe(direct.turns);
  });
});
