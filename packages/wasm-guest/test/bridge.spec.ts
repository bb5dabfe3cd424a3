import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { test } from '../../../test/property-test.js';
import { wasmApi } from '../src/abi/wasm-api.js';
import {
  type BridgeCallResult,
  endIdleGuestThreads,
  type TdcallServer,
  WasmBridge,
  type WasmBridgeOptions,
} from '../src/index.js';
import { abiViolation, bridgeProbe, Fault, faultyGuest, hasClang, warnIfSkipped } from './support/guests.js';

warnIfSkipped('clang', 'bridge.spec.ts');

const compile = async (path: string) => wasmApi.compile(await readFile(path));
const open: WasmBridge[] = [];

async function start(path: string, options: Omit<WasmBridgeOptions, 'name'> = {}) {
  const started = await WasmBridge.start(await compile(path), { name: 'probe', ...options });
  if (!(started instanceof WasmBridge)) throw new Error(`did not start: ${started.fault.message}`);
  open.push(started);
  return started;
}

/** A server that answers every TDCALL with `answer(block)`. */
const serving =
  (answer: (block: readonly bigint[]) => readonly bigint[]): TdcallServer =>
  async (block) =>
    answer(block);
const never: TdcallServer = async () => {
  throw new Error('no TDCALL expected');
};

function returned(result: BridgeCallResult): Extract<BridgeCallResult, { kind: 'returned' }> {
  if (result.kind !== 'returned') throw new Error(`expected a return, got ${JSON.stringify(result)}`);
  return result;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((bridge) => bridge.close()));
});

describe.skipIf(!hasClang)('WasmBridge', () => {
  let probe: string;
  beforeAll(async () => {
    probe = await bridgeProbe();
  });

  it('passes i64 and i32 arguments and results both ways, and no result as undefined', async () => {
    const bridge = await start(probe);
    expect(returned(await bridge.call('add64', [{ i64: 2n ** 62n }, { i64: 3n }], never)).value).toBe(
      2n ** 62n + 3n,
    );
    // A u64 that does not fit i64 comes back as the signed value wasm returns.
    expect(returned(await bridge.call('add64', [{ i64: 2n ** 63n }, { i64: 1n }], never)).value).toBe(
      -(2n ** 63n) + 1n,
    );
    expect(returned(await bridge.call('negative', [], never)).value).toBe(-5n);
    expect(returned(await bridge.call('nothing', [], never)).value).toBeUndefined();
  });

  test.prop(
    [fc.bigUint64Array({ minLength: 11, maxLength: 11 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 12n })],
    {
      numRuns: 15,
    },
  )(
    'hands the guest register block to the server and the server output back, all 64 bits',
    async (output, seed) => {
      const bridge = await start(probe);
      let seen: readonly bigint[] = [];
      const result = await bridge.call(
        'tdcall_pattern',
        [{ i64: seed }],
        serving((block) => {
          seen = block;
          return [...output];
        }),
      );
      expect(returned(result).tdcalls).toBe(1);
      expect(seen).toEqual(Array.from({ length: 11 }, (_, i) => seed + BigInt(i)));
      for (let i = 0; i < 11; i++) {
        expect(returned(await bridge.call('last_register', [{ i32: i }], never)).value).toBe(
          BigInt.asIntN(64, output[i] as bigint),
        );
      }
    },
  );

  it('serves many TDCALLs in one call, one at a time, in order', async () => {
    const bridge = await start(probe);
    let n = 0;
    const result = returned(
      await bridge.call(
        'vp_info_loop',
        [{ i32: 1000 }],
        serving((block) => [block[0] as bigint, BigInt(++n), ...block.slice(2)]),
      ),
    );
    expect(result.tdcalls).toBe(1000);
    expect(result.value).toBe(BigInt((1000 * 1001) / 2));
  });

  it('inside a call waits for the guest in a blocking wait: far fewer asynchronous waits than TDCALLs', async () => {
    const bridge = await start(probe);
    // The host's thread only: the worker's Atomics is its own.
    const waitAsync = vi.spyOn(
      Atomics as unknown as { waitAsync: (...args: never[]) => unknown },
      'waitAsync',
    );
    const wait = vi.spyOn(Atomics, 'wait');
    try {
      // TDCALLs back to back: the host's watch of the counter catches most of them on idle cores (on a CI machine,
      // all 1,000, so no wait at all), a wait is blocking, and an asynchronous one comes only once the thread has
      // been held for the bound (a busy machine's stall).
      const back = returned(
        await bridge.call(
          'vp_info_loop',
          [{ i32: 1000 }],
          serving((block) => block),
        ),
      );
      expect(back.tdcalls).toBe(1000);
      expect(waitAsync.mock.calls.length).toBeLessThan(100);
      waitAsync.mockClear();
      wait.mockClear();
      // Each TDCALL after 30,000 xorshift steps (90,000 dependent operations, tens of µs): longer than the watch (2,000
      // checks, 1–2 µs) on any machine, so each wait for the guest's next TDCALL sleeps, and in Atomics.wait.
      const apart = returned(
        await bridge.call(
          'compute_then_tdcall',
          [{ i32: 200 }, { i32: 30_000 }],
          serving((block) => block),
        ),
      );
      expect(apart.tdcalls).toBe(200);
      expect(wait.mock.calls.length).toBeGreaterThan(0);
      expect(waitAsync.mock.calls.length).toBeLessThan(20);
    } finally {
      waitAsync.mockRestore();
      wait.mockRestore();
    }
  });

  // 200,000,000 xorshift steps are 600,000,000 dependent operations: far more than 50 ms on any machine.
  const STEPS = 200_000_000;

  /**
   * Calls compute_then_tdcall(rounds, STEPS / rounds) with a server that answers through promises alone; whether a
   * setImmediate queued before the call had run when the last TDCALL was served (before the call resolved).
   */
  async function turnedDuring(rounds: number): Promise<boolean | undefined> {
    // The call timeout bounds a guest that hangs, not how fast this machine computes: under load the computation
    // outran the default 5 s. An hour leaves a hang to the test's own timeout; what is tested is that waiting far
    // beyond the blocking bound neither times the call out nor holds the event loop.
    const bridge = await start(probe, { callTimeoutMs: 3_600_000 });
    let turned = false;
    setImmediate(() => {
      turned = true;
    });
    let turnedAtLast: boolean | undefined;
    let served = 0;
    const result = await bridge.call(
      'compute_then_tdcall',
      [{ i32: rounds }, { i32: STEPS / rounds }],
      async (block) => {
        if (++served === rounds) turnedAtLast = turned;
        return block;
      },
    );
    // Returned, not a timeout fault: the long computation is not taken for a hang.
    expect(returned(result).tdcalls).toBe(rounds);
    return turnedAtLast;
  }

  it('lets the event loop turn while a guest computes long before a TDCALL, and is not timed out for it', async () => {
    expect(await turnedDuring(1)).toBe(true);
  });

  it('lets the event loop turn in a long call of short stretches served through promises alone', async () => {
    // Each TDCALL after a 2,000th of the work: no one wait reaches the bound, their sum does.
    expect(await turnedDuring(2000)).toBe(true);
  });

  it('never hands the guest a stale reply: four guests at once, 20,000 TDCALLs each, every reply consumed once', async () => {
    // A late wake-up (the other side's notify for the previous message) once let the worker read the previous
    // reply again; each reply here is distinct, so the guest's sum shows any reply read twice or missed.
    const bridges = await Promise.all([0, 1, 2, 3].map(() => start(probe)));
    const count = 20_000;
    const results = await Promise.all(
      bridges.map((bridge, b) => {
        let n = 0;
        return bridge.call(
          'vp_info_loop',
          [{ i32: count }],
          serving((block) => [block[0] as bigint, BigInt(++n + b), ...block.slice(2)]),
        );
      }),
    );
    results.forEach((result, b) => {
      expect(returned(result)).toMatchObject({
        tdcalls: count,
        value: BigInt((count * (count + 1)) / 2 + b * count),
      });
    });
  });

  it('delivers log lines in order, as UTF-8', async () => {
    const lines: string[] = [];
    const bridge = await start(probe, { onLog: (line) => lines.push(line) });
    await bridge.call('log_twice', [], never);
    expect(lines).toEqual(['first line', 'second line: été']);
    expect(bridge.recentLog).toEqual(lines);
  });

  it('returns the page buffer, larger than the first outcome buffer, also when the guest grows its memory', async () => {
    const bridge = await start(probe);
    for (const [pages, grow] of [
      [1000, 0],
      [600_000, 0],
      [700_000, 40],
    ] as const) {
      const result = returned(
        await bridge.call('fill_pages', [{ i64: BigInt(pages) }, { i32: grow }], never, pages),
      );
      expect(result.pages?.length).toBe(pages);
      const wrong = result.pages?.findIndex((byte, i) => byte !== i % 3);
      expect(wrong).toBe(-1);
    }
  });

  it('gives the thread of a cleanly closed guest to the next guest, with nothing of the last guest left in it', async () => {
    const first = await start(probe);
    await first.call(
      'tdcall_pattern',
      [{ i64: 100n }],
      serving((block) => block),
    );
    expect(returned(await first.call('last_register', [{ i32: 0 }], never)).value).toBe(100n);
    const thread = first.threadId;
    await first.close();
    const second = await start(probe);
    expect(second.threadId).toBe(thread);
    // A fresh instance: its memory starts zeroed.
    expect(returned(await second.call('last_register', [{ i32: 0 }], never)).value).toBe(0n);
    // A guest that faults takes its thread down: the next guest gets another one.
    await second.call('vp_info_loop', [{ i32: 5 }], async () => 'stop');
    const third = await start(probe);
    expect(third.threadId).not.toBe(thread);
    expect(returned(await third.call('negative', [], never)).value).toBe(-5n);
  });

  it('endIdleGuestThreads ends the pooled threads: the next guest gets a new one', async () => {
    const first = await start(probe);
    const thread = first.threadId;
    await first.close();
    await endIdleGuestThreads();
    const second = await start(probe);
    expect(second.threadId).not.toBe(thread);
    expect(returned(await second.call('negative', [], never)).value).toBe(-5n);
  });

  it('rethrows an error of the server (the simulation failed) and ends the guest', async () => {
    const bridge = await start(probe);
    const failure = new Error('the VMM died');
    await expect(
      bridge.call('vp_info_loop', [{ i32: 3 }], async () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(bridge.alive).toBe(false);
    await expect(bridge.call('nothing', [], never)).rejects.toThrow(/not running/);
  });

  it('ends the guest where the server says stop', async () => {
    const bridge = await start(probe);
    let calls = 0;
    const result = await bridge.call('vp_info_loop', [{ i32: 100 }], async (block) =>
      ++calls > 5 ? 'stop' : block,
    );
    expect(result).toEqual({ kind: 'stopped', tdcalls: 6 });
    expect(bridge.alive).toBe(false);
  });

  it('refuses a second call while one runs', async () => {
    const bridge = await start(probe);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = bridge.call('vp_info_loop', [{ i32: 1 }], async (block) => {
      await gate;
      return block;
    });
    await expect(bridge.call('nothing', [], never)).rejects.toThrow(/already running/);
    release();
    expect(returned(await first).tdcalls).toBe(1);
  });

  it.each([
    ['trap', Fault.TRAP, /unreachable/],
    ['timeout', Fault.SPIN, /no TDCALL and no return within 300 ms/],
    ['bad-pointer', Fault.BAD_BLOCK, /register block at 0xfffffff0 .* outside the guest's/],
    ['bad-pointer', Fault.MISALIGNED, /register block at 0x[0-9a-f]+ \(88 bytes\) is not 8-byte aligned/],
    ['bad-pointer', Fault.LOG_BAD, /log text at 0xfffffff0/],
    // The whole line must lie in memory, not only the 4,096 bytes kept of it.
    ['bad-pointer', Fault.LOG_LONG, /log text at 0x[0-9a-f]+ \(8192 bytes\) is outside the guest's/],
    // Logging is no pause: a guest that logs now and then never restarts the per-call timeout.
    ['timeout', Fault.LOG_SLOW, /no TDCALL and no return within 300 ms/],
  ] as const)(
    'reports a %s fault (fixture %d), terminates the worker and leaves the host able to go on',
    async (kind, mode, message) => {
      const bridge = await start(await faultyGuest(mode), { callTimeoutMs: 300 });
      const result = await bridge.call(
        'tdxsim_set_shared',
        [{ i64: 0n }, { i64: 4096n }],
        serving((block) => [0n, 48n, ...block.slice(2)]),
        1,
      );
      expect(result.kind).toBe('fault');
      if (result.kind !== 'fault') return;
      expect(result.fault).toMatchObject({ kind, guest: 'probe', entry: 'tdxsim_set_shared' });
      expect(result.fault.message).toMatch(message);
      expect(bridge.alive).toBe(false);
      // The host is unharmed: another guest starts and runs.
      const next = await start(probe);
      expect(returned(await next.call('negative', [], never)).value).toBe(-5n);
    },
  );

  it('keeps the last log lines in a trap report', async () => {
    const bridge = await start(await faultyGuest(Fault.TRAP));
    const result = await bridge.call('tdxsim_set_shared', [{ i64: 0n }, { i64: 4096n }], async (b) => b, 0);
    expect(result.kind === 'fault' && result.fault.log).toEqual(['faulty-guest: about to trap']);
  });

  it('reports a module that cannot be instantiated as a fault, without starting a guest', async () => {
    const started = await WasmBridge.start(await compile(await abiViolation(3)), { name: 'printf' });
    expect(started).not.toBeInstanceOf(WasmBridge);
    expect(!(started instanceof WasmBridge) && started.fault).toMatchObject({
      guest: 'printf',
      entry: '(instantiation)',
    });
  });

  it('stops a guest that logs in a loop at the log fuse, whatever the timeout', async () => {
    const bridge = await start(await faultyGuest(Fault.LOG_LOOP), { callTimeoutMs: 600_000, logFuse: 500 });
    const result = await bridge.call('tdxsim_set_shared', [{ i64: 0n }, { i64: 4096n }], never, 1);
    expect(result.kind === 'fault' && result.fault).toMatchObject({
      kind: 'fuse',
      message: 'more than 500 log lines in one call (a loop?)',
    });
    expect(bridge.alive).toBe(false);
  });

  it('tells holdWhile of every wait on the worker, each settled by the time the call returns', async () => {
    const stretches: Promise<unknown>[] = [];
    let settled = 0;
    const bridge = await start(probe, {
      holdWhile: (work) => {
        stretches.push(work);
        void work.then(() => settled++);
      },
    });
    // The start, then per call: from the call to its first message, from each resume to the next one (a TDCALL, a log
    // line, the return). A wait on a log line ends and the next begins in one turn: no scheduler turn falls between.
    expect(stretches.length).toBe(1);
    const result = await bridge.call(
      'vp_info_loop',
      [{ i32: 3 }],
      serving((block) => block),
    );
    expect(returned(result).tdcalls).toBe(3);
    await Promise.all(stretches);
    expect(stretches.length).toBe(1 + 4);
    expect(settled).toBe(stretches.length);
    await bridge.call('log_twice', [], never);
    expect(stretches.length).toBe(1 + 4 + 3);
  });

  it('refuses bad options with a typed error', async () => {
    const module = await compile(probe);
    await expect(WasmBridge.start(module, { name: 'x', logFuse: 1.5 })).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      argument: 'logFuse',
    });
    await expect(
      WasmBridge.start(module, { name: 'x', holdWhile: 3 as unknown as () => void }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTION', argument: 'holdWhile' });
    await expect(WasmBridge.start(module, { name: 'x', callTimeoutMs: 0 })).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      argument: 'callTimeoutMs',
    });
    await expect(
      WasmBridge.start(module, { name: 'x', timeout: 5 } as unknown as { name: string }),
    ).rejects.toMatchObject({ code: 'UNKNOWN_OPTION', argument: 'timeout' });
  });
});
