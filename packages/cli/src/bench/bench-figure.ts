/** A target of issue 14's table: the figure must be at most (or at least) `limit`. */
export interface Target {
  readonly limit: number;
  readonly atLeast?: boolean;
}

/** One measured figure of the benchmark, with its target when the issue sets one. */
export interface BenchFigure {
  readonly name: string;
  readonly unit: string;
  /** Minimum and median over the runs. */
  readonly min: number;
  readonly median: number;
  readonly target?: Target;
  /** PASS when the median meets the target, FAIL when not, undefined without a target. */
  readonly verdict?: 'PASS' | 'FAIL';
}

/** The median of `values` (the lower middle one of an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] as number;
}

function verdictOf(value: number, target: Target): 'PASS' | 'FAIL' {
  return (target.atLeast === true ? value >= target.limit : value <= target.limit) ? 'PASS' : 'FAIL';
}

function judge(value: number, target: Target | undefined): 'PASS' | 'FAIL' | undefined {
  return target === undefined ? undefined : verdictOf(value, target);
}

/** `[≤ limit unit: PASS]` (or `≥`, FAIL) when judged and there is a target, else nothing. */
export function showTarget(target: Target | undefined, unit: string, value: number, judged: boolean): string {
  if (target === undefined || !judged) return '';
  return `[${target.atLeast === true ? '≥' : '≤'} ${target.limit} ${unit}: ${judge(value, target)}]`;
}

const fixed = (n: number, digits = 0): string => n.toFixed(digits);

/**
 * A figure of the given minimum and median, judged on `median` against `target` when `judged` and it has one: for a
 * figure whose two values do not come from one list (a ratio of minima and a ratio of medians).
 */
export function figureOf(
  name: string,
  unit: string,
  min: number,
  median: number,
  target: Target | undefined,
  judged: boolean,
): BenchFigure {
  return {
    name,
    unit,
    min,
    median,
    ...(target === undefined ? {} : { target }),
    ...(judged && target !== undefined ? { verdict: verdictOf(median, target) } : {}),
  };
}

/** A figure of `values` (its minimum and median), judged against `target` when `judged` and it has one. */
export function benchFigure(
  name: string,
  unit: string,
  values: number[],
  target: Target | undefined,
  judged: boolean,
): BenchFigure {
  return figureOf(name, unit, Math.min(...values), median(values), target, judged);
}

/** The line `tdxsim bench` prints for a figure: `name: min … unit, median … unit  [target: verdict]`. */
export function figureLine(f: BenchFigure, digits: number, judged: boolean): string {
  return `${f.name}: min ${fixed(f.min, digits)} ${f.unit}, median ${fixed(f.median, digits)} ${f.unit}  ${showTarget(f.target, f.unit, f.median, judged)}`;
}
