import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { workedExample } from '../examples/worked-example.js';
import { SPIN_BUDGET } from '../src/bridge/adaptive-spin.js';
import { hasClang, warnIfSkipped } from './support/guests.js';

warnIfSkipped('clang', 'readme.spec.ts');

const read = (path: string): string => readFileSync(new URL(path, import.meta.url), 'utf8');
const readme = read('../README.md');

/** The fenced block of `language` that follows `marker` in the README. */
function blockAfter(marker: string, language: string): string {
  const at = readme.indexOf(marker);
  expect(at).toBeGreaterThan(0);
  const start = readme.indexOf(`\`\`\`${language}\n`, at) + language.length + 4;
  return readme.slice(start, readme.indexOf('```', start));
}

describe('the README', () => {
  it('shows the worked example as examples/worked-example.ts has it, and the C loop as kernel-guest.c has it', () => {
    expect(read('../examples/worked-example.ts')).toContain(
      blockAfter('against the hostile `r11-past-end`', 'ts'),
    );
    expect(read('../examples/c/kernel-guest.c')).toContain(blockAfter('The heart of its MapGPA loop', 'c'));
  });

  it("gives the bridge's watch as SPIN_BUDGET has it", () => {
    expect(readme).toContain(`(up to ${SPIN_BUDGET.full.toLocaleString('en-US')} checks,`);
  });

  it('gives the clang command line compileCGuest runs', () => {
    const command = blockAfter('## Compile a guest', 'sh');
    expect(command).toContain('clang --target=wasm32 -O2 -ffreestanding -nostdlib -Wall -Wextra');
    expect(command).toContain('-Wl,--no-entry');
    const compile = read('../src/toolchain/compile.ts');
    for (const flag of [
      '--target=wasm32',
      '-ffreestanding',
      '-nostdlib',
      '-Wall',
      '-Wextra',
      '-Wl,--no-entry',
    ])
      expect(compile).toContain(`'${flag}'`);
  });

  it.skipIf(!hasClang)('prints what the README says the worked example prints', async () => {
    const lines: string[] = [];
    await workedExample((line) => lines.push(line));
    expect(lines).toEqual(blockAfter('prints the following', 'text').trim().split('\n'));
  });
});
