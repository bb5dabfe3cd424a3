import { describe, expect, it } from 'vitest';
import { moduleAloneInChild } from '../src/bench/module-alone-in-child.js';

const GIB = 2 ** 30;
const command = (script: string): string[] => [process.execPath, '-e', script];

describe("tdxsim bench's module-alone runs in a process of their own", () => {
  it('runs both module-alone accepts in the real child and reads one CPU time of each per run', async () => {
    const figures = await moduleAloneInChild(GIB, 2);
    expect(figures.augAccept).toHaveLength(2);
    expect(figures.sameCalls).toHaveLength(2);
    for (const ms of [...figures.augAccept, ...figures.sameCalls]) expect(ms).toBeGreaterThan(0);
  });

  it('hands the child the bytes and the runs, and reports a child that fails or writes something else', async () => {
    // The child gets the bytes and the runs as its last two arguments.
    const echo = command(
      'const [bytes, runs] = process.argv.slice(-2).map(Number); for (let r = 1; r <= runs; r++) console.log(JSON.stringify({ augAccept: bytes / 2 ** 30 + r, sameCalls: 10 * r }));',
    );
    await expect(moduleAloneInChild(2 * GIB, 2, echo)).resolves.toEqual({
      augAccept: [3, 4],
      sameCalls: [10, 20],
    });
    await expect(
      moduleAloneInChild(GIB, 1, command('console.error("no TDMR"); process.exit(4)')),
    ).rejects.toThrow(/the module-alone child process exited with code 4:\nno TDMR/);
    await expect(moduleAloneInChild(GIB, 1, command('console.log("quick")'))).rejects.toThrow(
      /not JSON: "quick"/,
    );
    await expect(moduleAloneInChild(GIB, 3, echo)).resolves.toMatchObject({ sameCalls: [10, 20, 30] });
    await expect(
      moduleAloneInChild(GIB, 2, command('console.log(JSON.stringify({ augAccept: 1, sameCalls: 1 }))')),
    ).rejects.toThrow(/wrote 1 result line\(s\) for 2 run\(s\)/);
    await expect(
      moduleAloneInChild(GIB, 1, command('console.log(JSON.stringify({ augAccept: 0, sameCalls: 5 }))')),
    ).rejects.toThrow(/unexpected result/);
    await expect(moduleAloneInChild(GIB, 1, ['/nonexistent/node'])).rejects.toThrow(/could not start/);
  });

  it('the child refuses arguments it cannot use', async () => {
    await expect(moduleAloneInChild(1024, 1)).rejects.toThrow(
      /exited with code 2:\nusage: module-alone-child/,
    );
  });
});
