import { describe, expect, it } from 'vitest';
import { exit4kInChild } from '../src/bench/exit-4k-in-child.js';

const command = (script: string): string[] => [process.execPath, '-e', script];

describe("tdxsim bench's 4K exit path runs in a process of its own", () => {
  it('runs accept-4g in the real child after its warm-up and reads both CPU times per run, per page', async () => {
    const figures = await exit4kInChild('kvm', 'linux', 512, 1, 2);
    expect(figures.acceptPerPage).toHaveLength(2);
    expect(figures.wholePerPage).toHaveLength(2);
    // The whole scenario holds the conversions, the TD's construction and the closing check besides.
    for (const [i, accept] of figures.acceptPerPage.entries()) {
      expect(accept).toBeGreaterThan(0);
      expect(figures.wholePerPage[i]).toBeGreaterThan(accept);
    }
  });

  it('hands the child its five arguments, and reports a child that fails or writes something else', async () => {
    // The child gets vmm, policy, pages, warm-up and runs as its last five arguments; per page in µs = ms × 1000 ÷ pages.
    const echo = command(
      'const [vmm, policy, pages, warmUp, runs] = process.argv.slice(-5); if (vmm !== "hyperv-512" || policy !== "asterinas" || warmUp !== "3") process.exit(9); for (let r = 1; r <= Number(runs); r++) console.log(JSON.stringify({ acceptMs: Number(pages) * r / 1000, wholeMs: Number(pages) * 2 * r / 1000 }));',
    );
    await expect(exit4kInChild('hyperv-512', 'asterinas', 1000, 3, 2, echo)).resolves.toEqual({
      acceptPerPage: [1, 2],
      wholePerPage: [2, 4],
    });
    await expect(exit4kInChild('kvm', 'linux', 1000, 1, 1, echo)).rejects.toThrow(/exited with code 9/);
    await expect(
      exit4kInChild('kvm', 'linux', 10, 0, 1, command('console.error("no TD"); process.exit(4)')),
    ).rejects.toThrow(/the exit-4k child process exited with code 4:\nno TD/);
    await expect(exit4kInChild('kvm', 'linux', 10, 0, 1, command('console.log("quick")'))).rejects.toThrow(
      /not JSON: "quick"/,
    );
    await expect(
      exit4kInChild(
        'kvm',
        'linux',
        10,
        0,
        2,
        command('console.log(JSON.stringify({ acceptMs: 1, wholeMs: 2 }))'),
      ),
    ).rejects.toThrow(/wrote 1 result line\(s\) for 2 run\(s\)/);
    await expect(
      exit4kInChild(
        'kvm',
        'linux',
        10,
        0,
        1,
        command('console.log(JSON.stringify({ acceptMs: 0, wholeMs: 2 }))'),
      ),
    ).rejects.toThrow(/unexpected result/);
    await expect(exit4kInChild('kvm', 'linux', 10, 0, 1, ['/nonexistent/node'])).rejects.toThrow(
      /could not start/,
    );
  });

  it('the child refuses arguments it cannot use, and a run whose accept does not exit once per page', async () => {
    await expect(exit4kInChild('kvm', 'linux', 0, 0, 1)).rejects.toThrow(
      /exited with code 2:\nusage: exit-4k-child/,
    );
    // Hyper-V maps at the level the guest asks for: the linux guest accepts at 2M there, one exit per 512 pages.
    await expect(exit4kInChild('hyperv-512', 'linux', 1024, 0, 1)).rejects.toThrow(/one per page expected/);
  });
});
