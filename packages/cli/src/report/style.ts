import type { Outcome } from '../scenario/scenario-result.js';

/** Terminal colours, off when not a TTY or when NO_COLOR is set (https://no-color.org). */
export interface Style {
  readonly outcome: (outcome: Outcome, text?: string) => string;
  readonly dim: (text: string) => string;
  readonly bold: (text: string) => string;
}

const CODES: Record<Outcome, string> = { ok: '32', 'failed-safely': '33', UNSAFE: '1;31', error: '35' };

export function makeStyle(colour: boolean): Style {
  const paint = (code: string, text: string): string => (colour ? `\u001b[${code}m${text}\u001b[0m` : text);
  return {
    outcome: (outcome, text = outcome) => paint(CODES[outcome], text),
    dim: (text) => paint('2', text),
    bold: (text) => paint('1', text),
  };
}

export function wantsColour(stream: NodeJS.WriteStream): boolean {
  return stream.isTTY === true && process.env.NO_COLOR === undefined;
}
