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
 * Fuzz campaigns run unmeasured in the fuzz child before the judged ones by default: V8 is still optimising the case
 * loop in the second campaign of a process (one child, 2,050 cases a campaign, `node --trace-opt`: about 330
 * functions optimised in the first campaign, 48 in the second, 16–18 in the third, 14–15 in the fourth, 3–5 after;
 * 1.6–1.7 s, 0.39–0.42 s, then 0.23–0.35 s of CPU). The rate still climbs slowly after that, as fewer functions are
 * left to optimise.
 */
export const FUZZ_WARM_UP = 2;

/** The warm-up campaigns of `tdxsim bench`'s fuzz figure: none with `--quick`, `--warm-up` when given, else 2. */
export function fuzzWarmUp(quick: boolean | undefined, warmUp: number | undefined): number {
  return quick === true ? 0 : (warmUp ?? FUZZ_WARM_UP);
}

/**
 * The fuzz figure of `tdxsim bench`: `warmUp` campaigns, then `campaigns` more, of `cases` cases each (seeds 1..the
 * total) run one after the other in a fresh child process, which times each by its own CPU time (`measure`, default
 * {@link fuzzCampaignsInChild}): the rows measured before in this process cannot slow them, and they run as a user's
 * `tdxsim fuzz` does. The warm-up campaigns (V8 compiling the case loop, see {@link FUZZ_WARM_UP}) are shown on lines
 * of their own, and the rate of all campaigns together on another; the figure judged is the median of the campaigns
 * after the warm-up, with their min. Every campaign, warm-up or not, must find no unsafe guest.
 * Returns false, with the reason on stderr and no figure, when the child failed or a campaign found an unsafe guest.
 */
export async function fuzzFigures(
  warmUp: number,
  campaigns: number,
  cases: number,
  figure: FigureSink,
  measure: (cases: number, campaigns: number) => Promise<FuzzCampaignFigure[]> = fuzzCampaignsInChild,
): Promise<boolean> {
  let measured: FuzzCampaignFigure[];
  try {
    measured = await measure(cases, warmUp + campaigns);
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
  const total = rates.length;
  process.stdout.write(
    `fuzz: ${total} campaign${total === 1 ? '' : 's'} of ${cases} cases (seeds 1..${total}) in a fresh node process, each timed by that process's CPU time\n`,
  );
  // The process's first campaigns run while V8 compiles the case loop (the first at about a fifth of the steady rate,
  // the second still optimising what a case runs once): each shown on its own line, the figure judged is the
  // campaigns after them, as a long campaign runs.
  for (const [i, rate] of rates.slice(0, warmUp).entries())
    process.stdout.write(
      `fuzz, ${i === 0 ? 'first campaign' : `campaign ${i + 1}`} of the process (warm-up, JIT compiling the case loop, not judged): ${rate.toFixed(0)} cases/s\n`,
    );
  if (warmUp > 0) {
    const allCpuMs = measured.reduce((sum, m) => sum + m.cpuMs, 0);
    const allCases = measured.reduce((sum, m) => sum + m.cases, 0);
    process.stdout.write(
      `fuzz, all ${total} campaigns of the process together (warm-up included, not judged): ${(allCases / (allCpuMs / 1000)).toFixed(0)} cases/s\n`,
    );
  }
  const judged = rates.slice(warmUp);
  const span = judged.length === 1 ? `campaign ${warmUp + 1}` : `campaigns ${warmUp + 1}..${total}`;
  const after =
    warmUp === 0 ? 'JIT warm-up included' : `after ${warmUp} warm-up campaign${warmUp === 1 ? '' : 's'}`;
  figure(
    `fuzz cases per CPU-second (${cases} cases, default checks, ${span} of the process, ${after}${judged.length === 1 ? '' : '; judged: their median'})`,
    'cases/s',
    judged,
    { limit: 5000, atLeast: true },
    0,
  );
  return true;
}
