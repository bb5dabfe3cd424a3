/**
 * `pnpm bench` for @tdxsim/wasm-guest: the cost of one TDCALL round trip through the bridge (guest in its worker →
 * the module on the main thread → guest), and the swiotlb 1 GiB scenario with the C example guest beside the
 * TypeScript guest (linux policy) on every honest backend. CPU time is the whole process's (both threads); figures
 * are medians. Targets print as PASS/MISS; the benchmark never fails the build.
 *
 * Run with: node --conditions=@tdxsim/source --import tsx bench/run.ts [--quick]
 */
import { readFile } from 'node:fs/promises';
import { buildCatalog } from '@tdxsim/cli';
import { buildTd, encodeLeaf, makeGprs, TdcallLeaf, TdxModule, type Vmm } from '@tdxsim/tdx-module';
import { buildCExamples } from '../examples/build-examples.js';
import { wasmApi } from '../src/abi/wasm-api.js';
import { newEntryRecord, tdcallServer } from '../src/guest/tdcall-server.js';
import { loadWasmGuest, type TdcallServer, toolchain, WasmBridge } from '../src/index.js';
import { bridgeProbe } from '../test/support/guests.js';
import { judgeScenario, tsRow, wasmRow } from '../test/support/judge-scenario.js';

const quick = process.argv.includes('--quick');
const TARGET_ROUND_TRIP_US = 20;

interface Cost {
  /** CPU microseconds (user + system, every thread) per operation. */
  readonly cpuUs: number;
  readonly wallUs: number;
}

async function cost(operations: number, run: () => Promise<void>): Promise<Cost> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await run();
  const wallUs = ((performance.now() - started) * 1000) / operations;
  const used = process.cpuUsage(cpu);
  return { cpuUs: (used.user + used.system) / operations, wallUs };
}

function median<T>(values: readonly T[], key: (value: T) => number): T {
  return [...values].sort((a, b) => key(a) - key(b))[Math.floor(values.length / 2)] as T;
}

const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
const us = (value: number): string => `${value.toFixed(1)} µs`;

/** TDG.VP.INFO `count` times: directly on the vCPU, through the bridge with a no-op server, and through the bridge to the module. */
async function roundTrips(count: number, samples: number): Promise<void> {
  const module = new TdxModule({ tdmr: { base: 2 ** 40, size: 2 ** 32 } });
  const td = await buildTd(module, { vcpus: 1 });
  const reenter: Vmm = { onTdExit: async () => makeGprs() };
  td.run(reenter);
  const cpu = td.guest(0);
  const probe = await wasmApi.compile(await readFile(await bridgeProbe()));
  const started = await WasmBridge.start(probe, { name: 'bridge-probe' });
  if (!(started instanceof WasmBridge)) throw new Error(started.fault.message);
  const bridge = started;
  const through = (serve: TdcallServer) => async () => {
    const result = await bridge.call('vp_info_loop', [{ i32: count }], serve);
    if (result.kind !== 'returned' || result.tdcalls !== count) throw new Error('the probe did not finish');
  };
  const noOp: TdcallServer = async (block) => block;
  const toModule = () =>
    tdcallServer(
      cpu,
      newEntryRecord(),
      { mapGpa: count, tdcalls: count },
      { enabled: false, record: () => {} },
    );
  const direct = async () => {
    const leaf = encodeLeaf(TdcallLeaf.VP_INFO);
    for (let i = 0; i < count; i++) await cpu.tdcall(leaf, makeGprs());
  };
  // Warm-up: JIT of both threads.
  await through(toModule())();
  await direct();
  const measure = async (run: () => Promise<void>) => {
    const costs: Cost[] = [];
    for (let i = 0; i < samples; i++) costs.push(await cost(count, run));
    return median(costs, (c) => c.cpuUs);
  };
  const module1 = await measure(direct);
  const bridge0 = await measure(through(noOp));
  const full = await measure(async () => through(toModule())());
  await bridge.close();
  console.log(
    `TDCALL round trip (TDG.VP.INFO, median of ${samples} runs of ${count.toLocaleString('en-US')}):`,
  );
  console.log(
    `  in TypeScript, straight to the module:      ${us(module1.cpuUs)} CPU, ${us(module1.wallUs)} wall`,
  );
  console.log(
    `  through the bridge, no-op server:            ${us(bridge0.cpuUs)} CPU, ${us(bridge0.wallUs)} wall`,
  );
  console.log(
    `  through the bridge to the module:            ${us(full.cpuUs)} CPU, ${us(full.wallUs)} wall  [target <= ${TARGET_ROUND_TRIP_US} µs CPU: ${verdict(full.cpuUs <= TARGET_ROUND_TRIP_US)}]`,
  );
}

/** swiotlb 1 GiB, C guest beside the TypeScript linux guest, on every honest backend. */
async function swiotlb(samples: number): Promise<void> {
  const catalog = await buildCatalog();
  const workload = catalog.workloads.find((w) => w.name === 'swiotlb-1g');
  if (workload === undefined) throw new Error('no swiotlb-1g workload');
  const c = wasmRow(await loadWasmGuest((await buildCExamples()).c));
  const ts = tsRow('linux', 'linux');
  console.log(
    `swiotlb 1 GiB (to shared and back), median of ${samples} runs, judged as tdxsim run judges it:`,
  );
  console.log(
    `  ${'backend'.padEnd(12)} ${'TypeScript linux'.padStart(26)} ${'C kernel-guest.wasm'.padStart(26)}`,
  );
  for (const vmm of catalog.vmms.filter((v) => v.kind === 'honest')) {
    const row: string[] = [];
    for (const guest of [ts, c]) {
      const costs: (Cost & { outcome: string })[] = [];
      for (let i = 0; i < samples; i++) {
        let outcome = '';
        const measured = await cost(1, async () => {
          outcome = (await judgeScenario(guest, vmm, workload)).outcome;
        });
        costs.push({ ...measured, outcome });
      }
      const m = median(costs, (x) => x.wallUs);
      row.push(
        `${(m.wallUs / 1000).toFixed(0)} ms wall, ${(m.cpuUs / 1000).toFixed(0)} ms CPU${m.outcome === 'ok' ? '' : ` (${m.outcome})`}`.padStart(
          26,
        ),
      );
    }
    console.log(`  ${vmm.name.padEnd(12)} ${row.join(' ')}`);
  }
}

const tools = await toolchain();
if (tools.clang === undefined) {
  console.log(`wasm-guest benchmarks skipped: ${tools.missing.join('; ')}`);
} else {
  console.log(`wasm-guest benchmarks (node ${process.version}${quick ? ', quick' : ''})`);
  await roundTrips(quick ? 2000 : 20_000, quick ? 3 : 7);
  await swiotlb(quick ? 1 : 5);
}
