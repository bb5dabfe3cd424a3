import { benchChildCommand, childOutputError, jsonLines, runBenchChild } from './bench-child.js';

/** One fuzz campaign as the child process measured it (see fuzz-child.ts). */
export interface FuzzCampaignFigure {
  readonly seed: number;
  /** Cases run (shrinking included). */
  readonly cases: number;
  /** The child's CPU time (user + system) around this campaign alone, in milliseconds. */
  readonly cpuMs: number;
  /** Whether a case broke a safety property. */
  readonly failed: boolean;
}

/** The command that runs the fuzz child (see {@link benchChildCommand}). */
export function fuzzChildCommand(): string[] {
  return benchChildCommand('fuzz-child');
}

/**
 * Runs `campaigns` sequential fuzz campaigns of `cases` cases (seeds 1..campaigns) in a fresh child process
 * (`command`, default {@link fuzzChildCommand}, given the two numbers as its last arguments) and returns what it measured
 * of each. Nothing the calling process ran before (other benchmarks, whose shapes leave shared functions polymorphic
 * or deoptimised) can slow them down: the figures are those of a `tdxsim fuzz` process. Rejects, with the child's
 * stderr, when the child fails or its output is not one well-formed line per campaign.
 */
export async function fuzzCampaignsInChild(
  cases: number,
  campaigns: number,
  command: readonly string[] = fuzzChildCommand(),
): Promise<FuzzCampaignFigure[]> {
  const stdout = await runBenchChild(command, [String(cases), String(campaigns)], "fuzz campaigns'");
  const figures = parseFigures(stdout, campaigns);
  if (typeof figures === 'string') throw childOutputError("fuzz campaigns'", figures);
  return figures;
}

/** The child's stdout read as {@link FuzzCampaignFigure}s, or why it cannot be. */
function parseFigures(stdout: string, campaigns: number): FuzzCampaignFigure[] | string {
  const values = jsonLines(stdout, campaigns, 'campaign');
  if (typeof values === 'string') return values;
  const figures: FuzzCampaignFigure[] = [];
  for (const [i, value] of values.entries()) {
    const figure = value as Partial<FuzzCampaignFigure> | null;
    const ok =
      typeof figure === 'object' &&
      figure !== null &&
      figure.seed === i + 1 &&
      typeof figure.cases === 'number' &&
      Number.isInteger(figure.cases) &&
      figure.cases >= 1 &&
      typeof figure.cpuMs === 'number' &&
      Number.isFinite(figure.cpuMs) &&
      figure.cpuMs > 0 &&
      typeof figure.failed === 'boolean';
    if (!ok)
      return `wrote an unexpected result for campaign ${i + 1}: ${JSON.stringify(JSON.stringify(value).slice(0, 200))}`;
    figures.push({
      seed: i + 1,
      cases: figure.cases as number,
      cpuMs: figure.cpuMs as number,
      failed: figure.failed as boolean,
    });
  }
  return figures;
}
