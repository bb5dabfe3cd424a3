import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { hexTraceRegs, type TraceEvent, type TraceSink, traceStatusText } from '@tdxsim/tdx-module';
import { assertString, assertTraceEvent } from '../api-validation.js';

/** Thread ids of the trace: the vCPUs' TDCALLs on 1…, their TD exits on 101…, the VMM's SEAMCALLs on 1000. */
const VMM_TID = 1000;
const exitTid = (vcpu: number): number => 101 + vcpu;
const FLUSH_EVERY = 2000;

/** The file `--trace-json DIR` writes for a scenario: its id with `/` as `__`. */
export function traceJsonPath(dir: string, id: string): string {
  return join(dir, `${id.replace(/\//g, '__')}.trace.json`);
}

/**
 * Writes a scenario's full call timeline as Chrome trace-event JSON (the array format that Perfetto and
 * chrome://tracing open): one instant event per TDCALL, SEAMCALL, TD exit and VMM reply at its virtual time (µs),
 * with the decoded registers and status as arguments, on one track per vCPU, one per vCPU's exits and one for the
 * VMM. Events are written as they come, so a long scenario does not hold its trace in memory.
 */
export class TraceJsonWriter implements TraceSink {
  readonly enabled = true;
  readonly #fd: number;
  #buffer: string[] = [];
  #first = true;
  readonly #named = new Set<number>();
  /** The virtual time (µs) of the last event. */
  #last = 0;

  constructor(path: string, scenario: string) {
    assertString('path', path);
    assertString('scenario', scenario);
    this.#fd = openSync(path, 'w');
    writeSync(this.#fd, '[\n');
    this.#push({ name: 'process_name', ph: 'M', pid: 1, tid: 0, args: { name: `tdxsim ${scenario}` } });
    this.#thread(VMM_TID, 'VMM SEAMCALLs');
  }

  record(event: TraceEvent): void {
    assertTraceEvent('event', event);
    // Notes from code without the module's clock (the guest's) carry time 0: they belong where the trace is now.
    const ts = event.kind === 'note' && event.time === 0 ? this.#last : event.time / 1000;
    this.#last = ts;
    switch (event.kind) {
      case 'seamcall':
        this.#instant(VMM_TID, event.leaf, ts, 'seamcall', {
          ...hexTraceRegs(event.args),
          status: traceStatusText(event),
        });
        return;
      case 'tdcall':
        this.#thread(1 + event.vcpu, `vCPU ${event.vcpu} TDCALLs`);
        this.#instant(1 + event.vcpu, event.leaf, ts, 'tdcall', {
          ...hexTraceRegs(event.args),
          status: traceStatusText(event),
        });
        return;
      case 'td-exit':
        this.#thread(exitTid(event.vcpu), `vCPU ${event.vcpu} TD exits`);
        this.#instant(exitTid(event.vcpu), `exit: ${event.reason}`, ts, 'td-exit', hexTraceRegs(event.regs));
        return;
      case 'vmm-reply':
        this.#thread(exitTid(event.vcpu), `vCPU ${event.vcpu} TD exits`);
        this.#instant(exitTid(event.vcpu), 'VMM reply', ts, 'vmm-reply', hexTraceRegs(event.regs));
        return;
      case 'note':
        this.#instant(0, event.text, ts, `note:${event.source}`, {});
        return;
    }
  }

  /** Writes the rest and closes the file. */
  close(): void {
    this.#flush();
    writeSync(this.#fd, '\n]\n');
    closeSync(this.#fd);
  }

  #thread(tid: number, name: string): void {
    if (this.#named.has(tid)) return;
    this.#named.add(tid);
    this.#push({ name: 'thread_name', ph: 'M', pid: 1, tid, args: { name } });
  }

  #instant(tid: number, name: string, ts: number, cat: string, args: Readonly<Record<string, string>>): void {
    this.#push({ name, cat, ph: 'i', s: 't', ts, pid: 1, tid, args });
  }

  #push(event: object): void {
    this.#buffer.push(`${this.#first ? '' : ',\n'}${JSON.stringify(event)}`);
    this.#first = false;
    if (this.#buffer.length >= FLUSH_EVERY) this.#flush();
  }

  #flush(): void {
    if (this.#buffer.length === 0) return;
    writeSync(this.#fd, this.#buffer.join(''));
    this.#buffer = [];
  }
}
