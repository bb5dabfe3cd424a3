import { styleText } from 'node:util';
import type { Outcome } from '../scenario/scenario-result.js';

/** Terminal colours through `node:util`'s `styleText`, or plain text when colour is off. */
export interface Style {
  readonly outcome: (outcome: Outcome, text?: string) => string;
  readonly dim: (text: string) => string;
  readonly bold: (text: string) => string;
  readonly red: (text: string) => string;
}

type Format = Parameters<typeof styleText>[0];

const OUTCOME_FORMATS: Record<Outcome, Format> = {
  ok: 'green',
  'failed-safely': 'yellow',
  UNSAFE: ['bold', 'red'],
  error: 'magenta',
};

export function makeStyle(colour: boolean): Style {
  // The stream was judged once (wantsColour); styleText must not judge it again.
  const paint = (format: Format, text: string): string =>
    colour ? styleText(format, text, { validateStream: false }) : text;
  return {
    outcome: (outcome, text = outcome) => paint(OUTCOME_FORMATS[outcome], text),
    dim: (text) => paint('dim', text),
    bold: (text) => paint('bold', text),
    red: (text) => paint('red', text),
  };
}

/**
 * Whether to colour `stream`, as Node decides for its own output: `FORCE_COLOR` (any value but `0`/`false`) turns
 * colour on even in a pipe; otherwise only a terminal gets colour, and `NO_COLOR`, `NODE_DISABLE_COLORS` and
 * `TERM=dumb` turn it off (https://no-color.org, https://force-color.org).
 */
export function wantsColour(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force !== 'false';
  if (stream.isTTY !== true) return false;
  if (env.NO_COLOR !== undefined || env.NODE_DISABLE_COLORS !== undefined || env.TERM === 'dumb')
    return false;
  return typeof stream.hasColors === 'function' ? stream.hasColors(env) : true;
}
