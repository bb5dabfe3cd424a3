import { assertIntegerInRange, showValue, TdxSimError } from '../errors.js';

/** The one seeded random source of a simulation. Every random choice comes from here, so a seed replays a run. */
export interface Rng {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
}

/** sfc32 seeded through splitmix32: small, fast and good enough for simulation choices. */
export class SeededRng implements Rng {
  readonly seed: number;
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    if (typeof seed !== 'number' || !Number.isSafeInteger(seed))
      throw new TdxSimError('INVALID_ARGUMENT', `seed must be an integer, got ${showValue(seed)}`, 'seed');
    this.seed = seed;
    let s = seed >>> 0;
    const split = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.#a = split();
    this.#b = split();
    this.#c = split();
    this.#d = split();
    // The bits above the low 32 (and the sign) count too: seeds 1 and 2^32 + 1 must not give the same stream. Seeds
    // in [0, 2^32) are seeded as they always were.
    const high = Math.floor(seed / 2 ** 32);
    if (high !== 0) {
      s ^= Math.imul(high | 0, 0x85ebca6b) ^ Math.imul(Math.floor(high / 2 ** 32) | 0, 0xc2b2ae35);
      this.#d ^= split();
    }
    for (let i = 0; i < 12; i++) this.next();
  }

  next(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  int(min: number, max: number): number {
    assertIntegerInRange('min', min, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    assertIntegerInRange('max', max, min, Number.MAX_SAFE_INTEGER);
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    if (typeof p !== 'number' || !(p >= 0 && p <= 1))
      throw new TdxSimError(
        'INVALID_ARGUMENT',
        `p must be a probability in [0, 1], got ${showValue(p)}`,
        'p',
      );
    return this.next() < p;
  }
}
