/** One conversion a workload asked for, as a round runs it: its range and direction. */
export interface RoundItem {
  readonly start: number;
  readonly end: number;
  readonly toShared: boolean;
}

const TWO_MIB = 2 ** 21;

/**
 * Splits a conversion across `vcpus` vCPUs: a range of at least `vcpus` 2 MiB blocks becomes `vcpus` parts on 2 MiB
 * boundaries (each vCPU converts one, at once: a boot-time accept or a bounce buffer as a multi-vCPU kernel does it);
 * a smaller one stays whole.
 */
export function splitAcrossVcpus(item: RoundItem, vcpus: number): RoundItem[] {
  const blocks = Math.floor((item.end - item.start) / TWO_MIB);
  if (vcpus < 2 || blocks < vcpus) return [item];
  const parts: RoundItem[] = [];
  let at = item.start;
  for (let i = 0; i < vcpus; i++) {
    const end =
      i === vcpus - 1
        ? item.end
        : at + Math.floor(blocks / vcpus) * TWO_MIB + (i < blocks % vcpus ? TWO_MIB : 0);
    parts.push({ start: at, end, toShared: item.toShared });
    at = end;
  }
  return parts;
}

/**
 * Groups a workload's conversions into rounds that `vcpus` vCPUs run at once: a round takes conversions in the
 * workload's order until it holds one per vCPU, or until the next one overlaps a conversion of the round in the other
 * direction (that one depends on the round's result: a buffer made shared, then private again). Conversions in the
 * same direction may overlap, as a workload's random ranges do: the guest serialises them per page range, and either
 * order leaves the same truth, which the round's judgement (after every conversion of the round ended) relies on.
 */
export class ConversionRounds {
  readonly #vcpus: number;
  #round: RoundItem[] = [];

  constructor(vcpus: number) {
    this.#vcpus = vcpus;
  }

  /**
   * Adds `item` (split across the vCPUs when large): returns the rounds complete before it and, when it fills one,
   * that round too, in order. What is left waits for more conversions or {@link flush}.
   */
  add(item: RoundItem): RoundItem[][] {
    const ready: RoundItem[][] = [];
    const parts = splitAcrossVcpus(item, this.#vcpus);
    if (parts.length > 1) {
      if (this.#round.length > 0) ready.push(this.#round);
      this.#round = [];
      ready.push(parts);
      return ready;
    }
    const conflicts = this.#round.some(
      (other) => other.toShared !== item.toShared && other.start < item.end && item.start < other.end,
    );
    if (conflicts) {
      ready.push(this.#round);
      this.#round = [];
    }
    this.#round.push(item);
    if (this.#round.length >= this.#vcpus) {
      ready.push(this.#round);
      this.#round = [];
    }
    return ready;
  }

  /** The round begun and not yet full (empty when none). */
  flush(): RoundItem[] {
    const round = this.#round;
    this.#round = [];
    return round;
  }
}
