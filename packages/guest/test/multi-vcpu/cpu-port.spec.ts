import { type GuestCpu, makeGprs, Reg } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { CpuPort } from '../../src/concurrency/cpu-port.js';

/**
 * A vCPU whose TDCALLs the test completes by hand (an exit to the VMM until `finish`), logging when each starts and
 * ends; `onStart` runs synchronously inside a TDCALL, as the module's instruction boundary runs a guest interrupt
 * handler. A TDCALL is named `#RCX` when RCX is not 0 (an ACCEPT through {@link CpuPort.acceptAwaited}), else `#RAX`.
 */
function fakeCpu(log: string[], onStart: (name: string) => void) {
  const finish = new Map<string, () => void>();
  const cpu = {
    index: 0,
    tdcall(rax: bigint, regs: readonly bigint[]) {
      const name = `#${regs[Reg.RCX] === 0n ? rax : regs[Reg.RCX]}`;
      log.push(`${name} start`);
      onStart(name);
      return new Promise((resolve) => {
        finish.set(name, () => {
          log.push(`${name} end`);
          resolve(makeGprs());
        });
      });
    },
  } as unknown as GuestCpu;
  return { cpu, finish: (name: string) => finish.get(name)?.() };
}

const turns = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('CpuPort: one instruction at a time per vCPU', () => {
  it('an instruction asked while another starts (an interrupt handler on the same vCPU) waits for it, in order', async () => {
    const log: string[] = [];
    let port: CpuPort | undefined;
    const asked: Promise<unknown>[] = [];
    const { cpu, finish } = fakeCpu(log, (name) => {
      // The handler of the first TDCALL's boundary starts two more instructions on this vCPU.
      if (name === '#1' && port !== undefined)
        asked.push(port.tdcall(2n, makeGprs()), port.tdcall(3n, makeGprs()));
    });
    port = new CpuPort(cpu);
    const first = port.tdcall(1n, makeGprs());
    const later = port.tdcall(4n, makeGprs());
    await turns();
    expect(log).toEqual(['#1 start']);
    for (const [name, next] of [
      ['#1', '#2'],
      ['#2', '#3'],
      ['#3', '#4'],
    ] as const) {
      finish(name);
      await turns();
      expect(log.slice(-2)).toEqual([`${name} end`, `${next} start`]);
    }
    finish('#4');
    await Promise.all([first, later, ...asked]);
    expect(log).toEqual([
      '#1 start',
      '#1 end',
      '#2 start',
      '#2 end',
      '#3 start',
      '#3 end',
      '#4 start',
      '#4 end',
    ]);
  });

  /**
   * One accept loop on the vCPU (two TDCALLs, each awaited at once), another task asking a TDCALL on the same vCPU
   * while the first is in flight, and a third task counting microtask turns across the first TDCALL's completion:
   * the log of who ran when.
   */
  async function interleaving(awaited: boolean): Promise<string[]> {
    const log: string[] = [];
    const { cpu, finish } = fakeCpu(log, () => undefined);
    const port = new CpuPort(cpu);
    const loop = (async () => {
      for (const n of [1n, 2n]) {
        const call = awaited ? port.acceptAwaited(n) : port.tdcall(n, makeGprs());
        await call;
        if (awaited) port.landed(call);
        log.push(`loop resumed after #${n}`);
      }
    })();
    await turns();
    const other = port.tdcall(9n, makeGprs()).then(() => log.push('other resumed'));
    const ticker = (async () => {
      for (let tick = 0; tick < 8; tick++) {
        log.push(`tick ${tick}`);
        if (tick === 1) finish('#1');
        await null;
      }
    })();
    await turns();
    finish('#9');
    await turns();
    finish('#2');
    await Promise.all([loop, other, ticker]);
    return log;
  }

  it('acceptAwaited + landed runs and queues exactly as tdcall, microtask for microtask', async () => {
    const plain = await interleaving(false);
    const awaited = await interleaving(true);
    expect(awaited).toEqual(plain);
    // The other task's TDCALL starts once the loop's first is done, before the loop's second (queued behind it).
    expect(plain.indexOf('#9 start')).toBeGreaterThan(plain.indexOf('#1 end'));
    expect(plain.indexOf('#2 start')).toBeGreaterThan(plain.indexOf('#9 end'));
    expect(plain.filter((line) => line.startsWith('tick')).length).toBe(8);
  });

  it('an instruction asked behind an acceptAwaited call starts only once its caller reports it landed', async () => {
    const log: string[] = [];
    const { cpu, finish } = fakeCpu(log, () => undefined);
    const port = new CpuPort(cpu);
    const call = port.acceptAwaited(1n);
    const queued = port.tdcall(2n, makeGprs());
    finish('#1');
    await call;
    await turns();
    expect(log).toEqual(['#1 start', '#1 end']);
    // A call it did not start itself (a stale or foreign promise) changes nothing.
    port.landed(Promise.resolve(makeGprs()));
    await turns();
    expect(log).toEqual(['#1 start', '#1 end']);
    port.landed(call);
    await turns();
    expect(log).toEqual(['#1 start', '#1 end', '#2 start']);
    finish('#2');
    await queued;
    // Nothing in flight any more: the next awaited call starts at once.
    const next = port.acceptAwaited(3n);
    expect(log.at(-1)).toBe('#3 start');
    finish('#3');
    port.landed(next);
  });
});
