import { type GuestCpu, makeGprs } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { CpuPort } from '../../src/concurrency/cpu-port.js';

/**
 * A vCPU whose TDCALLs the test completes by hand (an exit to the VMM until `finish`), logging when each starts and
 * ends; `onStart` runs synchronously inside a TDCALL, as the module's instruction boundary runs a guest interrupt
 * handler.
 */
function fakeCpu(log: string[], onStart: (name: string) => void) {
  const finish = new Map<string, () => void>();
  const cpu = {
    index: 0,
    tdcall(rax: bigint) {
      const name = `#${rax}`;
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
});
