import { GuestIds, type GuestPolicy, guestModule, type TdGuest } from '@tdxsim/guest';
import {
  type BuiltTd,
  composeTd,
  MemoryTraceSink,
  type Scheduler,
  type TdxModule,
  type TraceSink,
  traceStatusText,
} from '@tdxsim/tdx-module';
import type { ContainerModule } from 'inversify';
import {
  type GuestUnderTest,
  type WasmGuest,
  WasmGuestIds,
  type WasmGuestImage,
  wasmGuestModule,
} from '../../src/index.js';

export interface TestTd<G extends GuestUnderTest> {
  readonly guest: G;
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly trace: MemoryTraceSink;
}

export interface TestTdOptions {
  readonly memoryBytes: number;
  readonly vcpus?: number;
  readonly scheduler?: Scheduler;
  readonly seed?: number;
  readonly fuse?: number;
  readonly callTimeoutMs?: number;
  /** Records instead of the MemoryTraceSink (which then stays empty). */
  readonly trace?: TraceSink;
}

/** Where host pages live: above every GPA a test uses, as the CLI's scenarios do. */
const TDMR_BASE = 2 ** 36;

function sim(options: TestTdOptions, trace: MemoryTraceSink) {
  const sink: TraceSink = options.trace ?? trace;
  let size = 2 ** 30;
  while (size < 2 * options.memoryBytes + 2 ** 30) size *= 2;
  return {
    seed: options.seed ?? 1,
    trace: sink,
    ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
    module: { tdmr: { base: TDMR_BASE, size } },
  };
}

/** A TD on `vmm` with the TypeScript guest of `policy`. */
export async function tsTd(
  vmm: ContainerModule,
  policy: GuestPolicy | 'linux' | 'strict' | 'openvmm',
  options: TestTdOptions,
): Promise<TestTd<TdGuest>> {
  const trace = new MemoryTraceSink(2_000_000);
  const composed = await composeTd({
    vmm,
    guest: {
      module: guestModule({
        memoryBytes: options.memoryBytes,
        policy,
        ...(options.fuse === undefined ? {} : { fuse: options.fuse }),
      }),
      id: GuestIds.Guest,
    },
    build: { gpaw: 48, vcpus: options.vcpus ?? 2 },
    sim: sim(options, trace),
  });
  return { guest: composed.guest, module: composed.module, td: composed.td, trace };
}

/** A TD on `vmm` with the wasm guest `image`. Close the guest when done. */
export async function wasmTd(
  vmm: ContainerModule,
  image: WasmGuestImage,
  options: TestTdOptions,
): Promise<TestTd<WasmGuest>> {
  const trace = new MemoryTraceSink(2_000_000);
  const composed = await composeTd({
    vmm,
    guest: {
      module: wasmGuestModule({
        image,
        memoryBytes: options.memoryBytes,
        ...(options.fuse === undefined ? {} : { fuse: options.fuse }),
        ...(options.callTimeoutMs === undefined ? {} : { callTimeoutMs: options.callTimeoutMs }),
      }),
      id: WasmGuestIds.Guest,
    },
    build: { gpaw: 48, vcpus: options.vcpus ?? 2 },
    sim: sim(options, trace),
  });
  return { guest: composed.guest, module: composed.module, td: composed.td, trace };
}

/** The MapGPA calls and accepts a guest made, as the trace shows them (what both kinds of guest record alike). */
export function guestCalls(trace: MemoryTraceSink): string[] {
  const calls: string[] = [];
  for (const event of trace.events) {
    // The calls themselves: the TypeScript guest's per-operation summary notes have no counterpart in a wasm guest.
    if (event.kind === 'note' && event.source === 'guest' && !event.text.startsWith('operation '))
      calls.push(event.text);
    if (event.kind === 'tdcall' && event.leaf === 'TDG.MEM.PAGE.ACCEPT')
      calls.push(`ACCEPT 0x${(event.args.rcx ?? 0n).toString(16)} -> ${traceStatusText(event)}`);
  }
  return calls;
}
