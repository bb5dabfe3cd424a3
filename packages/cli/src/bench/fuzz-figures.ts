import { type FuzzCampaignFigure, fuzzCampaignsInChild } from './fuzz-in-child.js';

/** Where `tdxsim bench` prints a figure: its name, unit, values (min and median shown), target and digits. */
export type FigureSink = (
  name: string,
  unit: string,
  values: number[],
  target?: { readonly limit: number; readonly atLeast?: boolean },
  digits?: number,
) => void;

/**
 * The fuzz figure of `tdxsim bench`: `campaigns` sequential campaigns of `cases` cases (seeds 1..campaigns) run one
 * after the other in a fresh child process, which times each by its own CPU time (`measure`, default
 * {@link fuzzCampaignsInChild}): the rows measured before in this process cannot slow them, and they run as a user's
 * `tdxsim fuzz` does. The first campaign (V8 compiling the
 * case loop) is shown on its own line; the figure judged is the median of campaigns 2..N, with their min. Returns
 * false, with the reason on stderr and no figure, when the child failed or a campaign found an unsafe guest.
 */
export async function fuzzFigures(
  campaigns: number,
  cases: number,
  figure: FigureSink,
  measure: (cases: number, campaigns: number) => Promise<FuzzCampaignFigure[]> = fuzzCampaignsInChild,
): Promise<boolean> {
  let measured: FuzzCampaignFigure[];
  try {
    measured = await measure(cases, campaigns);
  } catch (error) {
    process.stderr.write(`tdxsim bench: fuzz: ${error instanceof Error ? error.message : String(error)}\n`);
    return false;
  }
  const unsafe = measured.filter((m) => m.failed).map((m) => m.seed);
  if (unsafe.length > 0) {
    process.stderr.write(
      `tdxsim bench: fuzz: the campaign of seed ${unsafe.join(', ')} found an unsafe guest (see tdxsim fuzz --kind sequential --runs ${cases} --seed ${unsafe[0]}): no figure\n`,
    );
    return false;
  }
  const rates = measured.map((m) => m.cases / (m.cpuMs / 1000));
  process.stdout.write(
    `fuzz: ${campaigns} campaign${campaigns === 1 ? '' : 's'} of ${cases} cases (seeds 1..${campaigns}) in a fresh node process, each timed by that process's CPU time\n`,
  );
  if (rates.length > 1)
    // The first campaign of a process runs while V8 compiles the case loop (about a third of the steady rate): shown
    // on its own line, and the figure judged is the campaigns after it, as a long campaign runs.
    process.stdout.write(
      `fuzz, first campaign of the process (JIT warm-up included, not judged): ${(rates[0] as number).toFixed(0)} cases/s\n`,
    );
  figure(
    `fuzz cases per CPU-second (${cases} cases, default checks, ${rates.length > 1 ? `campaigns 2..${rates.length} of the process; judged: their median` : 'first campaign of the process: JIT warm-up included'})`,
    'cases/s',
    rates.length > 1 ? rates.slice(1) : rates,
    { limit: 5000, atLeast: true },
    0,
  );
  return true;
}
