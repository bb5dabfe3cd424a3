/** Users per chunk of {@link PageUsers} (a power of two: a user's chunk and slot are a shift and a mask). */
const CHUNK_BITS = 12;
const CHUNK = 2 ** CHUNK_BITS;

/** One chunk of users: their kinds, levels, TDRs, GPAs or indexes, and GPA spans of one entry. */
interface UserChunk {
  readonly kinds: Uint8Array;
  readonly levels: Uint8Array;
  readonly tdrs: Float64Array;
  readonly ats: Float64Array;
  readonly spans: Float64Array;
}

function newChunk(): UserChunk {
  return {
    kinds: new Uint8Array(CHUNK),
    levels: new Uint8Array(CHUNK),
    tdrs: new Float64Array(CHUNK),
    ats: new Float64Array(CHUNK),
    spans: new Float64Array(CHUNK),
  };
}

/**
 * The users of host pages that {@link checkInvariants} records, numbered from 0 in the order added: a kind, the TDR of
 * its TD, a GPA or index, a SEPT table's level (kept in a byte), and the GPA span of one entry of a table's record.
 * Kept in typed arrays (26 bytes a user, no object or boxed number per user). The check keeps one record for all the
 * guest pages of a SEPT table (and one for its child tables), so a TD of a million 4K pages has a few thousand records;
 * four growing `number[]` of one user per page were 30 MiB of garbage at the end of every closing check of a 1 TiB TD
 * at 2M. The arrays come in chunks of 4,096 users, added as needed and never copied, each check starting again from
 * the first chunk.
 */
export class PageUsers {
  #chunks: UserChunk[] = [newChunk()];
  /** The chunk users are being added to, and its number. */
  #current: UserChunk = this.#chunks[0] as UserChunk;
  #currentIndex = 0;
  #count = 0;

  /** Forgets every user, for the next check; only the first chunk is kept (the others are not held between checks). */
  reset(): void {
    this.#count = 0;
    this.#currentIndex = 0;
    this.#current = this.#chunks[0] as UserChunk;
    if (this.#chunks.length > 1) this.#chunks = [this.#current];
  }

  /** Records a user (kind below 256, level kept modulo 256, TDR and `at` safe integers); returns its number. */
  add(kind: number, tdr: number, at: number, level: number, span: number): number {
    const user = this.#count;
    const slot = user & (CHUNK - 1);
    let chunk = this.#current;
    if (user >>> CHUNK_BITS !== this.#currentIndex) chunk = this.#next();
    chunk.kinds[slot] = kind;
    chunk.levels[slot] = level;
    chunk.tdrs[slot] = tdr;
    chunk.ats[slot] = at;
    chunk.spans[slot] = span;
    this.#count = user + 1;
    return user;
  }

  kind(user: number): number {
    return this.#chunkOf(user).kinds[user & (CHUNK - 1)] as number;
  }

  level(user: number): number {
    return this.#chunkOf(user).levels[user & (CHUNK - 1)] as number;
  }

  tdr(user: number): number {
    return this.#chunkOf(user).tdrs[user & (CHUNK - 1)] as number;
  }

  at(user: number): number {
    return this.#chunkOf(user).ats[user & (CHUNK - 1)] as number;
  }

  span(user: number): number {
    return this.#chunkOf(user).spans[user & (CHUNK - 1)] as number;
  }

  #chunkOf(user: number): UserChunk {
    return this.#chunks[user >>> CHUNK_BITS] as UserChunk;
  }

  /** The chunk after the current one, made on first use. */
  #next(): UserChunk {
    const index = this.#currentIndex + 1;
    let chunk = this.#chunks[index];
    if (chunk === undefined) {
      chunk = newChunk();
      this.#chunks.push(chunk);
    }
    this.#currentIndex = index;
    this.#current = chunk;
    return chunk;
  }
}
