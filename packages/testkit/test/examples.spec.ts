import { describe, expect, it } from 'vitest';
import { exploreRace } from '../examples/explore-race.js';

describe('README worked example: find, shrink and replay a race', () => {
  it('finds the lockless zap, prints the minimal schedule with its replay, and the replay fails the same way', async () => {
    const lines: string[] = [];
    const result = await exploreRace((line) => lines.push(line));
    const failure = result.failure;
    if (failure === undefined) throw new Error('no failure found');
    expect(failure.kind).toBe('view');
    const report = lines[0] ?? '';
    expect(report).toMatch(/^exploreSchedules \(random, seed 1\): schedule #\d+ of \d+ run failed/);
    expect(report).toContain(`minimal schedule ${failure.schedule}`);
    expect(report).toContain('mirror.zap mirror-cleared 0x100000 ran ahead of vcpu0 GUEST read 0x100000');
    expect(report).toContain(`replay: replaySchedule({ scenario, schedule: '${failure.schedule}' })`);
    expect(lines[1]).toBe(`replayed ${failure.schedule}: view, ${failure.trace.length} trace events`);
  });
});
