/**
 * The storm guard and cancellation against a VMM that makes progress one page per MapGPA call — legal, and
 * endless on a huge range: a Hyper-V-like backend converting one page per call. Run:
 * pnpm --filter @tdxsim/guest example:storm
 */
import { hypervVmm } from '@tdxsim/host-hyperv';
import { composeTd } from '@tdxsim/tdx-module';
import { type GuestPolicy, guestPresets, STORM_GUARD_CALLS, TdGuest } from '../src/index.js';

export async function stormGuard(log: (line: string) => void = console.log): Promise<void> {
  const GIB = 2 ** 30;
  const { td, module } = await composeTd({ vmm: hypervVmm({ chunkPages: 1 }), build: { gpaw: 48 } });

  // strict stops any one operation after STORM_GUARD_CALLS MapGPA calls (4,194,304). To see it quickly, a policy
  // of your own with a budget of 10,000 calls per operation:
  const guarded: GuestPolicy = {
    ...guestPresets.strict,
    name: 'strict, 10k calls',
    mapGpa: { ...guestPresets.strict.mapGpa, hypercallBudget: 10_000 },
  };
  const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 64 * GIB, policy: guarded });
  log(`strict's budget: ${STORM_GUARD_CALLS} MapGPA calls per operation`);

  // A 16 GiB MMIO window to shared, one page per call: 4,194,304 calls; the guard stops it at 10,000.
  const result = await guest.setShared(32 * GIB, 16 * GIB);
  if (result.kind === 'failed' && result.failure.step === 'map-gpa') {
    const failure = result.failure.failure;
    log(
      `16 GiB at one page per call: ${result.kind} after ${result.mapGpaCalls} calls (${failure.kind}, guard ${failure.kind === 'call-bound' ? failure.guard : '-'})`,
    );
    const bytes = (outcome: string) =>
      result.pages
        .filter((run) => run.outcome === outcome)
        .reduce((sum, run) => sum + run.end - run.start, 0);
    log(
      `converted: ${bytes('converted') / 4096} pages; asked for and unacknowledged, quarantined: ${bytes('unknown') / 4096} pages`,
    );
  }

  // Cancellation: a guest without a guard of its own (linux) and a caller that gives up after its 100th MapGPA
  // call; the conversion stops before its next TDCALL.
  const controller = new AbortController();
  let calls = 0;
  const cpu = td.guest(0);
  const tdcall = cpu.tdcall.bind(cpu);
  cpu.tdcall = async (rax, regs) => {
    const out = await tdcall(rax, regs);
    if (rax === 0n && ++calls === 100) controller.abort('deadline'); // leaf 0: TDG.VP.VMCALL
    return out;
  };
  const second = await TdGuest.boot(cpu, { memoryBytes: 64 * GIB, policy: 'linux' });
  const aborted = await second.setShared(8 * GIB, GIB, { signal: controller.signal });
  log(
    `linux, cancelled: ${aborted.kind} after ${aborted.mapGpaCalls} calls (${aborted.kind === 'aborted' ? String(aborted.reason) : '-'})`,
  );
  log(
    `ledger matches the module: ${guest.check(module, td.tdr).length === 0 && second.check(module, td.tdr).length === 0}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await stormGuard();
