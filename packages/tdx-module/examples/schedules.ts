/**
 * README example: run a race under a seeded random scheduler, record its schedule, replay it exactly.
 * Run: node --conditions=@tdxsim/source --import tsx examples/schedules.ts
 */
import {
  buildTd,
  type ControlledScheduler,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  formatSchedule,
  MemoryTraceSink,
  makeGprs,
  RandomScheduler,
  Reg,
  ReplayScheduler,
  TdcallLeaf,
  TdxModule,
  type Vmm,
} from '../src/index.js';

/** Two vCPUs accept the same page while a host thread AUGs another: returns the guests' statuses and the trace. */
async function race(scheduler: ControlledScheduler) {
  const trace = new MemoryTraceSink();
  const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 30 } }, { scheduler, trace });
  const td = await buildTd(module, { vcpus: 2 });
  const vmm: Vmm = {
    // AUG the page an ACCEPT exit asks for (R8 = its GPA); SEPT.ADD the tables first.
    async onTdExit(exit) {
      const gpa = Number(exit.regs[Reg.R8]);
      await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
      await td.host.pageAug(td.tdr, gpa, 0, td.allocator.alloc4k());
      return makeGprs();
    },
  };
  td.run(vmm);
  const accept = (vcpu: number, gpa: number) =>
    td.guest(vcpu).tdcall(encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT), makeGprs({ rcx: encodePageInfo(gpa, 0) }));
  const worker = module.runAs('worker', async () => {
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, 0x5000, 0, td.pwl);
    return td.host.pageAug(td.tdr, 0x5000, 0, td.allocator.alloc4k());
  });
  const results = await Promise.all([accept(0, 0x1000), accept(1, 0x1000), worker]);
  return { results, trace: JSON.stringify(trace.events, (_k, v) => (typeof v === 'bigint' ? `${v}` : v)) };
}

export async function schedules(log: (line: string) => void = console.log) {
  const random = new RandomScheduler({ seed: 42 });
  const first = await race(random);
  random.dispose(); // switches thread tracking off
  const schedule = formatSchedule(random.schedule);
  log(`schedule ${schedule}: ${random.steps.length} steps, ${random.schedule.decisions.length} real choices`);
  const replay = new ReplayScheduler(schedule);
  const again = await race(replay);
  replay.dispose();
  log(
    `replayed: same trace ${again.trace === first.trace}, same interleaving ${replay.signature() === random.signature()}`,
  );
  return { schedule, same: again.trace === first.trace };
}

if (import.meta.url === `file://${process.argv[1]}`) await schedules();
