/** A fenced code block of a markdown file, with the `readme-block` marker comment written just above it, if any. */
export interface CodeBlock {
  /** The markdown file, relative to the repository root. */
  readonly file: string;
  /** Line of the opening fence (1-based). */
  readonly line: number;
  /** The fence's info string up to the first space, lower case ('' when there is none). */
  readonly language: string;
  readonly code: string;
  readonly marker: BlockMarker | undefined;
}

/**
 * `<!-- readme-block: mirrors PATH -->`: the block is a verbatim part of PATH (relative to the markdown file).
 * `<!-- readme-block: file NAME -->`: the block runs as NAME, so later blocks of the same file can import it.
 */
export type BlockMarker = { readonly kind: 'mirrors' | 'file'; readonly path: string };

const CHECKED = new Set(['ts', 'typescript', 'mts', 'js', 'javascript', 'mjs']);
const EXEMPT = new Set([
  'sh',
  'bash',
  'shell',
  'console',
  'text',
  'txt',
  'json',
  'jsonc',
  'yaml',
  'yml',
  'html',
  'xml',
  'diff',
  'md',
  'markdown',
]);

/** Languages whose blocks must run or mirror a tested file. */
export function isCheckedLanguage(language: string): boolean {
  return CHECKED.has(language);
}

/** Languages whose blocks are not programs of this repository (commands, output, data). */
export function isExemptLanguage(language: string): boolean {
  return EXEMPT.has(language);
}

const MARKER = /^<!--\s*readme-block:\s*(mirrors|file)\s+(\S+)\s*-->$/;

/** The fenced code blocks of `text` (``` and ~~~ fences; a block ends at a fence of the same kind and length). */
export function readmeCodeBlocks(file: string, text: string): CodeBlock[] {
  const lines = text.split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i] as string);
    if (open === null) continue;
    const fence = open[1] as string;
    let end = i + 1;
    while (end < lines.length && !(lines[end] as string).trimEnd().startsWith(fence)) end++;
    let before = i - 1;
    while (before >= 0 && (lines[before] as string).trim() === '') before--;
    const marker = before >= 0 ? MARKER.exec((lines[before] as string).trim()) : null;
    blocks.push({
      file,
      line: i + 1,
      language: (open[2] as string).toLowerCase(),
      code: `${lines.slice(i + 1, end).join('\n')}\n`,
      marker:
        marker === null ? undefined : { kind: marker[1] as BlockMarker['kind'], path: marker[2] as string },
    });
    i = end;
  }
  return blocks;
}
