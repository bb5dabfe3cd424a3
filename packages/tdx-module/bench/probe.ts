import {
  buildTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  makeGprs,
  Reg,
  SeamcallLeaf,
  TdxModule,
} from '../src/index.js';

const module = new TdxModule({ tdmr: { base: 2 ** 40, size: 4 * 2 ** 30 } });
const td = await buildTd(module, { vcpus: 1, skipFinalize: true });
await ensureSeptTables(module, td.host, td.allocator, td.tdr, 0, 0, td.pwl);
const pages = Array.from({ length: 512 }, () => td.allocator.alloc4k());
const regs = makeGprs({ rdx: td.tdr });
const aug = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG),
  rem = encodeLeaf(SeamcallLeaf.MEM_PAGE_REMOVE);
for (let rep = 0; rep < 3; rep++) {
  const t = performance.now();
  let n = 0;
  for (let round = 0; round < 300; round++)
    for (let i = 0; i < 512; i++) {
      regs[Reg.RCX] = encodePageInfo(i * 4096, 0);
      regs[Reg.R8] = BigInt(pages[i] as number);
      await module.seamcall(aug, regs);
      await module.seamcall(rem, regs);
      n += 2;
    }
  console.log((((performance.now() - t) / n) * 1000).toFixed(3), 'us/call');
}
