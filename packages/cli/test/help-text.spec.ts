import { describe, expect, it } from 'vitest';
import { COMMANDS, createProgram } from '../src/program.js';
import { runMain } from './run-cli.js';

describe('the help of every command', () => {
  it('never shows "(default: [])" for a repeatable option, and still shows the defaults that say something', async () => {
    // Not vacuous: options that start from an empty list exist (commander would print "(default: [])" for them).
    const program = createProgram(() => {});
    const emptyListOptions = program.commands.flatMap((command) =>
      command.options
        .filter((o) => Array.isArray(o.defaultValue) && o.defaultValue.length === 0)
        .map((o) => `${command.name()} ${o.long}`),
    );
    expect(emptyListOptions).toContain('explore --backend');
    expect(emptyListOptions).toContain('run --backend');
    for (const command of [...COMMANDS.map((c) => c.name), '']) {
      const help = await runMain(command === '' ? ['--help'] : ['help', command]);
      expect(help.code, command).toBe(0);
      expect(help.stdout, command).not.toContain('(default: [])');
      expect(help.stdout, command).not.toMatch(/default: \[\s*\]/);
    }
    const explore = (await runMain(['help', 'explore'])).stdout.replace(/\s+/g, ' ');
    expect(explore).toContain('--scheduler <kind> how schedules are drawn: random or pct (default: "pct")');
    expect(explore).toContain(
      '--backend <file> load your own backend from a .ts, .mts, .js or .mjs file (repeatable) --scheduler',
    );
  });
});
