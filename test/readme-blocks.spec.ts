import { describe, expect, it } from 'vitest';
import { readmeCodeBlocks } from './readme-blocks.js';

describe('readmeCodeBlocks', () => {
  it('finds fenced blocks with their language, line and the marker just above them', () => {
    const text = [
      '# Title', // 1
      '<!-- readme-block: file my-vmm.ts -->', // 2
      '', // 3
      '```ts', // 4
      'export const a = 1;', // 5
      '```', // 6
      '```', // 7
      'no language', // 8
      '```', // 9
      '<!-- readme-block: mirrors test/x.spec.ts -->', // 10
      '```TypeScript title="x"', // 11
      'x();', // 12
      '```', // 13
    ].join('\n');
    expect(readmeCodeBlocks('R.md', text)).toEqual([
      {
        file: 'R.md',
        line: 4,
        language: 'ts',
        code: 'export const a = 1;\n',
        marker: { kind: 'file', path: 'my-vmm.ts' },
      },
      { file: 'R.md', line: 7, language: '', code: 'no language\n', marker: undefined },
      {
        file: 'R.md',
        line: 11,
        language: 'typescript',
        code: 'x();\n',
        marker: { kind: 'mirrors', path: 'test/x.spec.ts' },
      },
    ]);
  });

  it('a longer fence holds shorter ones, and a marker separated by prose does not count', () => {
    const text = [
      '<!-- readme-block: file a.ts -->',
      'Some prose.',
      '````md',
      '```ts',
      'inner',
      '```',
      '````',
    ].join('\n');
    const blocks = readmeCodeBlocks('R.md', text);
    expect(blocks).toHaveLength(1);
    expect(blocks[0]).toMatchObject({ language: 'md', code: '```ts\ninner\n```\n', marker: undefined });
  });
});
