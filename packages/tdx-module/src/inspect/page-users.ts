/**
 * The users of host pages that {@link checkInvariants} records, numbered from 0 in the order added: a kind, the TDR of
 * its TD, a GPA or index, and a SEPT table's level. Kept in typed arrays grown by doubling (18 bytes a user, no object
 * or boxed number per user): a 1 TiB TD at 2M has half a million guest-page users, which four growing `number[]`
 * kept as 30 MiB of garbage at the end of every closing check.
 */
export class PageUsers {
  #kinds = new Uint8Array(1024);
  #levels = new Uint8Array(1024);
  #tdrs = new Float64Array(1024);
  #ats = new Float64Array(1024);
  #count = 0;

  /** Forgets every user, for the next check; arrays grown past 4,096 users go back to 1,024 (not held between checks). */
  reset(): void {
    this.#count = 0;
    if (this.#kinds.length <= 4096) return;
    this.#kinds = new Uint8Array(1024);
    this.#levels = new Uint8Array(1024);
    this.#tdrs = new Float64Array(1024);
    this.#ats = new Float64Array(1024);
  }

  /** Records a user (kind and level below 256, TDR and `at` safe integers); returns its number. */
  add(kind: number, tdr: number, at: number, level: number): number {
    const user = this.#count;
    if (user === this.#kinds.length) this.#grow();
    this.#kinds[user] = kind;
    this.#levels[user] = level;
    this.#tdrs[user] = tdr;
    this.#ats[user] = at;
    this.#count = user + 1;
    return user;
  }

  kind(user: number): number {
    return this.#kinds[user] as number;
  }

  level(user: number): number {
    return this.#levels[user] as number;
  }

  tdr(user: number): number {
    return this.#tdrs[user] as number;
  }

  at(user: number): number {
    return this.#ats[user] as number;
  }

  #grow(): void {
    const size = this.#kinds.length * 2;
    this.#kinds = grown(this.#kinds, new Uint8Array(size));
    this.#levels = grown(this.#levels, new Uint8Array(size));
    this.#tdrs = grown(this.#tdrs, new Float64Array(size));
    this.#ats = grown(this.#ats, new Float64Array(size));
  }
}

/** `larger` with the contents of `array` at its start. */
function grown<T extends Uint8Array | Float64Array>(array: T, larger: T): T {
  larger.set(array);
  return larger;
}
