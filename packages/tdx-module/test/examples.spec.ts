import { describe, expect, it } from 'vitest';
import { nmisAroundOneExit } from '../examples/nmi-seamret.js';
import { quickstart } from '../examples/quickstart.js';
import { schedules } from '../examples/schedules.js';

describe('README quick start', () => {
  it('runs and reports what the module answered', async () => {
    const lines: string[] = [];
    const trace = await quickstart((line) => lines.push(line));
    expect(lines[0]).toMatch(/: SUCCESS$/);
    expect(lines[1]).toMatch(/PAGE_ALREADY_ACCEPTED\(level 0\)$/);
    expect(lines[2]).toBe('TDG.VP.VMCALL<MapGPA>: RAX SUCCESS, R10 = 0');
    expect(trace.events.some((e) => e.kind === 'td-exit' && e.reason === 'EPT violation (ACCEPT)')).toBe(
      true,
    );
    expect(trace.events.filter((e) => e.kind === 'seamcall' && e.leaf === 'TDH.MEM.PAGE.AUG')).toHaveLength(
      1,
    );
  });
});

describe('README: a schedule recorded and replayed', () => {
  it('prints the schedule and replays it to the same trace and interleaving', async () => {
    const lines: string[] = [];
    const { schedule, same } = await schedules((line) => lines.push(line));
    expect(same).toBe(true);
    expect(schedule).toMatch(/^v1:[0-9.*]*@[0-9a-f]{8}$/);
    expect(lines[0]).toMatch(
      new RegExp(
        `^schedule ${schedule.replaceAll('*', '\\*').replaceAll('.', '\\.')}: \\d+ steps, \\d+ real choices$`,
      ),
    );
    expect(lines[1]).toBe('replayed: same trace true, same interleaving true');
  });
});

describe('README: NMIs around one TD exit', () => {
  it('module 1.5 handles NMI X + 1 first and NMI X becomes an unknown NMI; the fix keeps the order', async () => {
    const lines: string[] = [];
    const restore = await nmisAroundOneExit('restore', (line) => lines.push(line));
    expect(restore.handledOrder).toEqual([1, 0]);
    expect(restore.unknownNmis).toBe(1);
    const fixed = await nmisAroundOneExit('keep-blocked-after-nmi-exit', (line) => lines.push(line));
    expect(fixed.handledOrder).toEqual([0, 1]);
    expect(fixed.unknownNmis).toBe(0);
    expect(lines).toEqual([
      'restore: NMI 0 nmi-exit, NMI 1 latched; exit RAX=0x0 R9=0x80000202',
      '  handler ran for NMI 1 (seamret): handled, serviced [perf, ipi]',
      '  handler ran for NMI 0 (nmi-exit): unknown, serviced []',
      '  handled in the order 1, 0; unknown NMIs: 1',
      'keep-blocked-after-nmi-exit: NMI 0 nmi-exit, NMI 1 latched; exit RAX=0x0 R9=0x80000202',
      '  handler ran for NMI 0 (nmi-exit): handled, serviced [perf, ipi]',
      '  handler ran for NMI 1 (iret): swallowed, serviced []',
      '  handled in the order 0, 1; unknown NMIs: 0',
    ]);
  });
});
