import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { fullCollection } from '../src/bench/full-collection.js';

describe('fullCollection', () => {
  // The test workers run without --expose-gc, as the installed `tdxsim bench` does.
  it('collects what nothing holds', async () => {
    let held: object | undefined = { payload: new Array(1000).fill(1) };
    const ref = new WeakRef(held);
    held = undefined;
    // A WeakRef made in this job keeps its target until the job ends.
    await nextTurn();
    fullCollection();
    expect(ref.deref()).toBeUndefined();
    // Twice: the second call reuses what the first one exposed.
    fullCollection();
  });
});
