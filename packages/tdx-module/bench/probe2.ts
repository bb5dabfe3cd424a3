import { checkEntryState, enterTd, lockedWalk } from '../src/core/gates.js';
import { HeldLocks } from '../src/core/held-locks.js';
import {
  buildTd,
  checkPageInfo,
  decodeLeaf,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  makeGprs,
  normalizeGprs,
  SeamcallLeaf,
  TdxModule,
} from '../src/index.js';

const module = new TdxModule({ tdmr: { base: 2 ** 40, size: 4 * 2 ** 30 } });
const td = await buildTd(module, { vcpus: 1, skipFinalize: true });
await ensureSeptTables(module, td.host, td.allocator, td.tdr, 0, 0, td.pwl);
const m = module.state;
const page = td.allocator.alloc4k();
const regs = makeGprs({ rdx: td.tdr, rcx: encodePageInfo(0x1000, 0), r8: page });
const tdc = m.tds.get(td.tdr);
const N = 500000;
const time = (label: string, f: () => void) => {
  let best = 1e9;
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    for (let i = 0; i < N; i++) f();
    best = Math.min(best, ((performance.now() - t) / N) * 1000);
  }
  console.log(label.padEnd(20), best.toFixed(3), 'us');
};
const rax = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG);
time('decodeLeaf', () => {
  decodeLeaf(rax);
});
time('normalizeGprs', () => {
  normalizeGprs(regs);
});
time('makeGprs', () => {
  makeGprs();
});
time('checkPageInfo', () => {
  checkPageInfo(regs[1] as bigint, 0, 1, 48);
});
time('new HeldLocks', () => {
  const h = new HeldLocks();
  h.releaseAll();
});
time('enterTd', () => {
  const h = new HeldLocks();
  enterTd(m, 6, regs, 2, 'shared', true, h);
  h.releaseAll();
});
time('checkHpaPage R8', () => {
  const h = new HeldLocks();
  m.checkHpaPage(regs[8] as bigint, 0, 0, 'exclusive', 8, h);
  h.releaseAll();
});
time('lockPamt 4K', () => {
  const h = new HeldLocks();
  m.lockPamt(page, 0, 'exclusive', 'host', 8, h);
  h.releaseAll();
});
const out = makeGprs();
time('lockedWalk', () => {
  const h = new HeldLocks();
  if (tdc) {
    const e = lockedWalk(tdc, 6, regs, out, 'shared', h);
    if (typeof e !== 'bigint') checkEntryState(6, e, out);
  }
  h.releaseAll();
});
time('tree.walk', () => {
  tdc?.tree.walk(0x1000, 0);
});
time('pamt.set', () => {
  m.pamt.set(page, 0, 0, 0, 0);
});
time('BigInt(number)', () => {
  BigInt(page);
});
time('Number(bigint)', () => {
  Number(regs[8]);
});
