import { describe, expect, it } from 'vitest';
import { ProgressDisplay } from '../src/report/progress.js';
import type { ScenarioResult } from '../src/scenario/scenario-result.js';

/** A stand-in for stderr that records what was written. */
function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const stream = {
    isTTY,
    columns: 100,
    text: '',
    write(chunk: string) {
      stream.text += chunk;
      return true;
    },
  };
  return stream as unknown as NodeJS.WriteStream & { text: string };
}

const result = (id: string, outcome: ScenarioResult['outcome']): ScenarioResult =>
  ({ id, outcome, wallMs: 12 }) as unknown as ScenarioResult;
const spec = { policy: 'linux', vmm: 'kvm', workload: 'churn', seed: 1 };

describe('progress display', () => {
  it('on a terminal: one status line redrawn in place, with outcomes and the running scenarios, cleared at the end', () => {
    const stream = fakeStream(true);
    const progress = new ProgressDisplay(stream, 3, false);
    progress.start(spec, 0);
    progress.finish(result('linux/kvm/churn', 'ok'), 0);
    progress.start({ ...spec, workload: 'dma-small' }, 1);
    progress.finish(result('linux/kvm/dma-small', 'UNSAFE'), 1);
    expect(stream.text).not.toContain('\n');
    const frames = stream.text.split('\r\u001b[2K').filter((f) => f !== '');
    expect(frames.at(-1)).toBe('[2/3] 1 ok · 0 failed-safely · 1 UNSAFE │ ');
    expect(frames).toContain('[0/3] 0 ok · 0 failed-safely · 0 UNSAFE │ linux/kvm/churn');
    progress.end();
    expect(stream.text.endsWith('\r\u001b[2K')).toBe(true);
    for (const frame of frames) expect(frame.length).toBeLessThan(100);
  });

  it('not on a terminal: a plain line per finished scenario, nothing redrawn', () => {
    const stream = fakeStream(false);
    const progress = new ProgressDisplay(stream, 12, false);
    progress.start(spec, 0);
    progress.progress(0, 5, 100);
    progress.finish(result('linux/kvm/churn', 'failed-safely'), 0);
    progress.end();
    expect(stream.text).toBe('[ 1/12] failed-safely linux/kvm/churn (12 ms)\n');
  });

  it('not on a terminal, a long scenario still gets a line: the running scenarios, when nothing was printed a while', async () => {
    const stream = fakeStream(false);
    const progress = new ProgressDisplay(stream, 3, false, { heartbeatMs: 200 });
    progress.start(spec, 0);
    progress.progress(0, 5, 100);
    await new Promise((resolve) => setTimeout(resolve, 450));
    progress.end();
    const lines = stream.text.split('\n').filter((l) => l !== '');
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines[0]).toMatch(/^\[0\/3\] running for \d+ ms: linux\/kvm\/churn 5\/100$/);
    const printed = stream.text;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(stream.text).toBe(printed);
  });
});
