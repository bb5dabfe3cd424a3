import { describe, expect, it } from 'vitest';
import {
  formatTraceRegs,
  hexTraceRegs,
  MemoryTraceSink,
  type TraceEvent,
  traceStatusText,
} from '../../src/index.js';

const note = (time: number): TraceEvent => ({ kind: 'note', time, source: 'test', text: `event ${time}` });

describe('MemoryTraceSink: a ring of the last events', () => {
  it('keeps the last `capacity` events in order, oldest first, and counts the dropped ones', () => {
    const sink = new MemoryTraceSink(3);
    for (let t = 1; t <= 2; t++) sink.record(note(t));
    expect(sink.events.map((e) => e.time)).toEqual([1, 2]);
    for (let t = 3; t <= 7; t++) sink.record(note(t));
    expect(sink.events.map((e) => e.time)).toEqual([5, 6, 7]);
    expect(sink.dropped).toBe(4);
    sink.record(note(8));
    expect(sink.events.map((e) => e.time)).toEqual([6, 7, 8]);
    for (let t = 9; t <= 10; t++) sink.record(note(t));
    // Wrapped exactly once more: the ring's start is back at slot 0.
    expect(sink.events.map((e) => e.time)).toEqual([8, 9, 10]);
    sink.clear();
    expect(sink.events).toEqual([]);
    expect(sink.dropped).toBe(0);
    sink.record(note(11));
    expect(sink.events.map((e) => e.time)).toEqual([11]);
  });

  it('matches a plain shift-based buffer for every capacity and length', () => {
    for (let capacity = 1; capacity <= 6; capacity++) {
      for (let n = 0; n <= 20; n++) {
        const sink = new MemoryTraceSink(capacity);
        const plain: number[] = [];
        for (let t = 0; t < n; t++) {
          sink.record(note(t));
          plain.push(t);
          if (plain.length > capacity) plain.shift();
        }
        expect(sink.events.map((e) => e.time)).toEqual(plain);
        expect(sink.dropped).toBe(Math.max(0, n - capacity));
      }
    }
  });
});

describe('trace events carry values, formatted when printed', () => {
  it('formats registers as hex in their order and a status by name', () => {
    const regs = { rcx: 0x1000n, rdx: 0n, r8: 0xffff_ffff_ffff_ffffn };
    expect(formatTraceRegs(regs)).toBe('rcx=0x1000 rdx=0x0 r8=0xffffffffffffffff');
    expect(hexTraceRegs(regs)).toEqual({ rcx: '0x1000', rdx: '0x0', r8: '0xffffffffffffffff' });
    expect(traceStatusText({ status: 0n })).toBe('SUCCESS 0x0000000000000000');
  });
});
