/** The buffer {@link wordsOfBuffer} last made a view of, and that view. */
let lastBuffer: ArrayBufferLike | undefined;
let lastWords: Uint32Array<ArrayBufferLike> = new Uint32Array(0);

/**
 * The whole of `buffer` as 32-bit words, for scans that read a table's small arrays four entries a word (the invariant
 * check's S-EPT and PAMT walks). A checkpoint restore puts every table of a tree, and every block of the PAMT, in one
 * buffer: a scan reading them through one view of it makes one view per check rather than one per table or block. The
 * view of the buffer asked about last is kept (a walk visits one buffer's tables one after another).
 */
export function wordsOfBuffer(buffer: ArrayBufferLike): Uint32Array<ArrayBufferLike> {
  if (buffer !== lastBuffer) {
    lastWords = new Uint32Array(buffer);
    lastBuffer = buffer;
  }
  return lastWords;
}
