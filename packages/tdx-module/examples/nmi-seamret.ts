/**
 * README example: two NMIs around one TD exit (seed thread 003). NMI X arrives while the TD runs and makes an NMI
 * exit; NMI X + 1 arrives while the module is still in SEAM root, before SEAMRET. Run under both NMI-blocking
 * behaviours at SEAMRET, with the VMM handling the NMI exit the way KVM does (its handler right after TDH.VP.ENTER).
 * Run: node --conditions=@tdxsim/source --import tsx examples/nmi-seamret.ts
 */
import {
  buildTd,
  encodeLeaf,
  makeGprs,
  type NmiBlockingAtSeamret,
  SeamcallLeaf,
  SteppingScheduler,
  TdxModule,
} from '../src/index.js';

export async function nmisAroundOneExit(
  policy: NmiBlockingAtSeamret,
  print: (line: string) => void = console.log,
) {
  // Park the vCPU's host thread after its TD exit, while the processor is still in SEAM root.
  const scheduler = new SteppingScheduler((point) => point.flow === 'TDH.VP.ENTER' && point.step === 'exit');
  const module = new TdxModule(
    { tdmr: { base: 2 ** 34, size: 2 ** 30 }, nmiBlockingAtSeamret: policy },
    { scheduler },
  );
  const td = await buildTd(module, { vcpus: 1 });
  const tdvpr = td.tdvprs[0] as number;
  const exit = module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), makeGprs({ rcx: tdvpr }));
  await new Promise((resolve) => setImmediate(resolve)); // the vCPU is in the TD now

  const x = module.raiseNmi(tdvpr, 'perf'); // NMI X: the TD was running → NMI exit, which consumes it
  await scheduler.waitForParked(1); // SEAM root: the exit has not reached the VMM yet
  const x1 = module.raiseNmi(tdvpr, 'ipi'); // NMI X + 1: latched (NMIs are inhibited in SEAM root)
  scheduler.releaseAll(); // SEAMRET
  const regs = await exit;
  module.handleNmiExit(tdvpr); // KVM: vmx_handle_nmi right after TDH.VP.ENTER returns

  const cpu = module.hostCpu(tdvpr);
  print(
    `${policy}: NMI ${x.nmi} ${x.disposition}, NMI ${x1.nmi} ${x1.disposition}; exit RAX=0x${regs[0]?.toString(16)} R9=0x${regs[9]?.toString(16)}`,
  );
  for (const run of cpu.handlings)
    print(
      `  handler ran for NMI ${run.nmi} (${run.entry}): ${run.outcome}, serviced [${run.serviced.join(', ')}]`,
    );
  print(`  handled in the order ${cpu.handledOrder.join(', ')}; unknown NMIs: ${cpu.unknownNmis}`);
  return cpu;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await nmisAroundOneExit('restore');
  await nmisAroundOneExit('keep-blocked-after-nmi-exit');
}
