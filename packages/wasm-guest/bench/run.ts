/**
 * `pnpm bench` for @tdxsim/wasm-guest: the cost of one TDCALL round trip through the bridge (guest in its worker →
 * the module on the main thread → guest), and the swiotlb 1 GiB scenario with the C example guest beside the
 * TypeScript guest (linux policy) on every honest backend. CPU time is the whole process's (both threads); figures
 * are medians. Targets print as PASS/MISS; the benchmark never fails the build.
 *
 * Run with: node --conditions=@tdxsim/source --import tsx bench/run.ts [--quick]
 */
import { readFile } from 'node:fs/promises';
import { type GuestUnderTest, TdGuest } from '@tdxsim/guest';
import { hypervVmm } from '@tdxsim/host-hyperv';
import { kvmVmm } from '@tdxsim/host-kvm';
import {
  buildTd,
  composeTd,
  encodeLeaf,
  type GuestFactory,
  makeGprs,
  SeededRng,
  TdcallLeaf,
  TdxModule,
  type Vmm,
} from '@tdxsim/tdx-module';
import { scenarioTd, swiotlb1g } from '@tdxsim/testkit';
import type { ContainerModule } from 'inversify';
import { buildCExamples } from '../examples/build-examples.js';
import { wasmApi } from '../src/abi/wasm-api.js';
import { newEntryRecord, tdcallServer } from '../src/guest/tdcall-server.js';
import { loadWasmGuest, type TdcallServer, toolchain, WasmBridge, WasmGuest } from '../src/index.js';
import { bridgeProbe } from '../test/support/guests.js';

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

/** The honest backends of `tdxsim run`'s matrix (its catalog, without depending on the CLI). */
const HONEST: readonly [string, (seed: number) => ContainerModule][] = [
  ['kvm', (seed) => kvmVmm({ seed })],
  ['kvm-events', (seed) => kvmVmm({ seed, pendingEventRate: 0.5 })],
  ['hyperv-512', (seed) => hypervVmm({ seed, chunkPages: 512 })],
  ['hyperv-2048', (seed) => hypervVmm({ seed, chunkPages: 2048 })],
  ['hyperv-8192', (seed) => hypervVmm({ seed, chunkPages: 8192 })],
];

/**
 * One swiotlb 1 GiB scenario on the TD `tdxsim run` builds (`scenarioTd`), the guest converting through the
 * workload's own code; resolves with how it ended (`ok`, or the first failure's kind).
 */
async function swiotlbOnce(vmm: ContainerModule, guest: GuestFactory<GuestUnderTest>): Promise<string> {
  const amount = swiotlb1g.defaultAmount;
  const memoryBytes = swiotlb1g.memoryBytes(amount);
  const composed = await composeTd({ vmm, guest, ...scenarioTd({ memoryBytes, seed: 1 }) });
  let outcome = 'ok';
  try {
    await swiotlb1g.run(
      {
        guest: composed.guest,
        rng: new SeededRng(1),
        async convert(start, size, toShared) {
          const g = composed.guest;
          const result = toShared ? await g.setShared(start, size) : await g.setPrivate(start, size);
          if (result.kind === 'failed' && outcome === 'ok') outcome = `failed: ${result.failure.step}`;
          return result;
        },
      },
      amount,
    );
  } finally {
    await composed.guest.close?.();
  }
  return outcome;
}

/** swiotlb 1 GiB, C guest beside the TypeScript linux guest, on every honest backend. */
async function swiotlb(samples: number): Promise<void> {
  const image = await loadWasmGuest((await buildCExamples()).c);
  const memoryBytes = swiotlb1g.memoryBytes(swiotlb1g.defaultAmount);
  const guests: GuestFactory<GuestUnderTest>[] = [
    (cpu, trace) => TdGuest.boot(cpu, { memoryBytes, policy: 'linux', trace }),
    (cpu, trace) => WasmGuest.boot(cpu, { image, memoryBytes, trace }),
  ];
  console.log(`swiotlb 1 GiB (to shared and back), median of ${samples} runs, on the TD of tdxsim run:`);
  console.log(
    `  ${'backend'.padEnd(12)} ${'TypeScript linux'.padStart(26)} ${'C kernel-guest.wasm'.padStart(26)}`,
  );
  for (const [name, vmm] of HONEST) {
    const row: string[] = [];
    for (const guest of guests) {
      const costs: (Cost & { outcome: string })[] = [];
      for (let i = 0; i < samples; i++) {
        let outcome = '';
        const measured = await cost(1, async () => {
          outcome = await swiotlbOnce(vmm(1), guest);
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
    console.log(`  ${name.padEnd(12)} ${row.join(' ')}`);
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
