import { describe, expect, it } from 'vitest';
import {
  buildTd,
  type ControlledScheduler,
  encodeLeaf,
  formatSchedule,
  type Gprs,
  injectNmis,
  makeGprs,
  type NmiBlockingAtSeamret,
  RandomScheduler,
  Reg,
  ReplayScheduler,
  runVcpu,
  TdcallLeaf,
  type TdExitEvent,
  TdxModule,
  VmExitReason,
  type Vmm,
} from '../../src/index.js';

/** A VMM that handles NMI exits as KVM does (its handler right after TDH.VP.ENTER) and re-enters after anything. */
class NmiAwareVmm implements Vmm {
  constructor(private readonly module: TdxModule) {}
  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    if (Number((exit.regs[Reg.RAX] as bigint) & 0xffffn) === VmExitReason.EXCEPTION_NMI)
      this.module.handleNmiExit(exit.tdvpr);
    return makeGprs();
  }
}

/** One vCPU running guest code (TDCALLs, each a yield point in guest mode) while two NMIs arrive when the scheduler says. */
async function run(scheduler: ControlledScheduler, policy: NmiBlockingAtSeamret) {
  const module = new TdxModule(
    { tdmr: { base: 2 ** 34, size: 2 ** 30 }, nmiBlockingAtSeamret: policy },
    { scheduler },
  );
  const td = await buildTd(module, { vcpus: 1 });
  const tdvpr = td.tdvprs[0] as number;
  void runVcpu(module, new NmiAwareVmm(module), { tdr: td.tdr, tdvpr, vcpuIndex: 0 }).catch(() => {});
  const guest = (async () => {
    for (let i = 0; i < 4; i++) await td.guest(0).tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs());
  })();
  await Promise.all([guest, injectNmis(module, td, [{ source: 'perf' }, { source: 'ipi' }])]);
  const cpu = module.hostCpu(tdvpr);
  // An NMI exit the VMM has not handled yet is handled as the vCPU's next exit would be.
  if (cpu.pendingExitNmi !== undefined) module.handleNmiExit(tdvpr);
  scheduler.dispose();
  return cpu;
}

describe('random schedules around TD exits with two NMIs', () => {
  it("find NMI X + 1 handled before NMI X under module 1.5 ('restore'); the replay reproduces it", async () => {
    let found: string | undefined;
    for (let seed = 1; seed <= 200 && found === undefined; seed++) {
      const scheduler = new RandomScheduler({ seed });
      const cpu = await run(scheduler, 'restore');
      if (cpu.inversions().length > 0) found = formatSchedule(scheduler.schedule);
    }
    expect(found).toBeDefined();
    const replayed = await run(new ReplayScheduler(found as string), 'restore');
    expect(replayed.handledOrder).toEqual([1, 0]);
    expect(replayed.unknownNmis).toBe(1);
  });

  it('never with NMIs kept blocked after an NMI exit (200 schedules)', async () => {
    for (let seed = 1; seed <= 200; seed++) {
      const cpu = await run(new RandomScheduler({ seed }), 'keep-blocked-after-nmi-exit');
      expect(cpu.inversions(), `seed ${seed}`).toEqual([]);
      expect(cpu.unknownNmis, `seed ${seed}`).toBe(0);
      // Every NMI was handled, or merged into the one latched before it (edge-triggered: one latch).
      expect([...cpu.handledOrder, ...cpu.merged.map((nmi) => nmi.nmi)].sort()).toEqual([0, 1]);
    }
  });
});
