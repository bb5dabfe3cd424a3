import type { Outcome, ScenarioResult, ScenarioSpec } from '../scenario/scenario-result.js';
import { scenarioId } from '../scenario/scenario-result.js';
import { makeStyle, type Style } from './style.js';
import { formatWall } from './table.js';

/** A plain log line at least this often while scenarios run, so that a CI log never looks stuck. */
const HEARTBEAT_MS = 10_000;

/**
 * Progress of a matrix on stderr: on a terminal, one status line redrawn at most every 100 ms (scenarios done, the
 * ones running and how far they are, outcomes so far); otherwise a plain line per finished scenario, and a line
 * naming the running scenarios whenever nothing was printed for {@link HEARTBEAT_MS}.
 */
export class ProgressDisplay {
  readonly #stream: NodeJS.WriteStream;
  readonly #live: boolean;
  readonly #style: Style;
  readonly #total: number;
  readonly #running = new Map<number, { id: string; done: number; total: number }>();
  readonly #counts: Record<Outcome, number> = { ok: 0, 'failed-safely': 0, UNSAFE: 0, error: 0 };
  readonly #heartbeatMs: number;
  readonly #started = Date.now();
  #finished = 0;
  #lastDraw = 0;
  #lastLine = Date.now();
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(
    stream: NodeJS.WriteStream,
    total: number,
    colour: boolean,
    options: { heartbeatMs?: number } = {},
  ) {
    this.#stream = stream;
    this.#live = stream.isTTY === true;
    this.#style = makeStyle(colour);
    this.#total = total;
    this.#heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  }

  start(spec: ScenarioSpec, index: number): void {
    this.#running.set(index, { id: scenarioId(spec), done: 0, total: 0 });
    if (!this.#live && this.#heartbeat === undefined) {
      this.#heartbeat = setInterval(() => this.#beat(), Math.max(50, this.#heartbeatMs / 4));
      this.#heartbeat.unref();
    }
    this.#draw(false);
  }

  progress(index: number, done: number, total: number): void {
    const running = this.#running.get(index);
    if (running !== undefined) Object.assign(running, { done, total });
    this.#draw(false);
  }

  finish(result: ScenarioResult, index: number): void {
    this.#running.delete(index);
    this.#finished++;
    this.#counts[result.outcome]++;
    if (!this.#live) {
      this.#write(
        `${this.#head()} ${this.#style.outcome(result.outcome, result.outcome.padEnd(13))} ${result.id} (${formatWall(result.wallMs)})\n`,
      );
      return;
    }
    this.#draw(true);
  }

  /** Clears the status line (before the results are printed) and stops the heartbeat. */
  end(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    if (this.#live) this.#stream.write('\r\u001b[2K');
  }

  #head(): string {
    return `[${String(this.#finished).padStart(String(this.#total).length)}/${this.#total}]`;
  }

  #runningText(): string {
    return [...this.#running.values()]
      .map((r) => (r.total > 0 ? `${r.id} ${r.done}/${r.total}` : r.id))
      .join(', ');
  }

  #write(text: string): void {
    this.#lastLine = Date.now();
    this.#stream.write(text);
  }

  #beat(): void {
    if (Date.now() - this.#lastLine < this.#heartbeatMs || this.#running.size === 0) return;
    this.#write(
      `${this.#head()} running for ${formatWall(Date.now() - this.#started)}: ${this.#runningText()}\n`,
    );
  }

  #draw(force: boolean): void {
    if (!this.#live) return;
    const now = Date.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const s = this.#style;
    const running = this.#runningText();
    const parts: [Outcome, string][] = [
      ['ok', `${this.#counts.ok} ok`],
      ['failed-safely', `${this.#counts['failed-safely']} failed-safely`],
      ['UNSAFE', `${this.#counts.UNSAFE} UNSAFE`],
    ];
    if (this.#counts.error > 0) parts.push(['error', `${this.#counts.error} error`]);
    const head = `${this.#head()} `;
    const plain = `${head}${parts.map(([, text]) => text).join(' · ')} │ `;
    // Only the list of running scenarios is cut to fit (colour codes take no columns).
    const room = (this.#stream.columns ?? 120) - 1 - plain.length;
    const line =
      `${head}${parts.map(([outcome, text]) => s.outcome(outcome, text)).join(' · ')} │ ` +
      (running.length > room ? `${running.slice(0, Math.max(0, room - 1))}…` : running);
    this.#stream.write(`\r\u001b[2K${line}`);
  }
}
