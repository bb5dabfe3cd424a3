import { describe, expect, it } from 'vitest';
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
    expect(schedule).toMatch(/^v1:[0-9.*]+$/);
    expect(lines[0]).toMatch(
      new RegExp(
        `^schedule ${schedule.replaceAll('*', '\\*').replaceAll('.', '\\.')}: \\d+ steps, \\d+ real choices$`,
      ),
    );
    expect(lines[1]).toBe('replayed: same trace true, same interleaving true');
  });
});
