import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  decodeLeaf,
  EeqType,
  EXIT_QUALIFICATION_WRITE,
  encodeLeaf,
  SeamcallLeaf,
  type SeamcallLeafName,
  seamcallLeafName,
  TdcallLeaf,
  type TdcallLeafName,
  tdcallLeafName,
  VmExitReason,
} from '../../src/index.js';

// Reference tdx-module.md §2.1, written literally: [constant, leaf number, spec name].
const SEAMCALL_LEAVES: readonly [SeamcallLeafName, number, string][] = [
  ['VP_ENTER', 0, 'TDH.VP.ENTER'],
  ['MNG_ADDCX', 1, 'TDH.MNG.ADDCX'],
  ['MEM_PAGE_ADD', 2, 'TDH.MEM.PAGE.ADD'],
  ['MEM_SEPT_ADD', 3, 'TDH.MEM.SEPT.ADD'],
  ['VP_ADDCX', 4, 'TDH.VP.ADDCX'],
  ['MEM_PAGE_AUG', 6, 'TDH.MEM.PAGE.AUG'],
  ['MEM_RANGE_BLOCK', 7, 'TDH.MEM.RANGE.BLOCK'],
  ['MNG_KEY_CONFIG', 8, 'TDH.MNG.KEY.CONFIG'],
  ['MNG_CREATE', 9, 'TDH.MNG.CREATE'],
  ['VP_CREATE', 10, 'TDH.VP.CREATE'],
  ['MNG_RD', 11, 'TDH.MNG.RD'],
  ['MNG_WR', 13, 'TDH.MNG.WR'],
  ['MEM_PAGE_DEMOTE', 15, 'TDH.MEM.PAGE.DEMOTE'],
  ['MR_EXTEND', 16, 'TDH.MR.EXTEND'],
  ['MR_FINALIZE', 17, 'TDH.MR.FINALIZE'],
  ['VP_FLUSH', 18, 'TDH.VP.FLUSH'],
  ['MNG_VPFLUSHDONE', 19, 'TDH.MNG.VPFLUSHDONE'],
  ['MNG_KEY_FREEID', 20, 'TDH.MNG.KEY.FREEID'],
  ['MNG_INIT', 21, 'TDH.MNG.INIT'],
  ['VP_INIT', 22, 'TDH.VP.INIT'],
  ['MEM_PAGE_PROMOTE', 23, 'TDH.MEM.PAGE.PROMOTE'],
  ['PHYMEM_PAGE_RDMD', 24, 'TDH.PHYMEM.PAGE.RDMD'],
  ['MEM_SEPT_RD', 25, 'TDH.MEM.SEPT.RD'],
  ['MNG_KEY_RECLAIMID', 27, 'TDH.MNG.KEY.RECLAIMID'],
  ['PHYMEM_PAGE_RECLAIM', 28, 'TDH.PHYMEM.PAGE.RECLAIM'],
  ['MEM_PAGE_REMOVE', 29, 'TDH.MEM.PAGE.REMOVE'],
  ['MEM_SEPT_REMOVE', 30, 'TDH.MEM.SEPT.REMOVE'],
  ['MEM_TRACK', 38, 'TDH.MEM.TRACK'],
  ['MEM_RANGE_UNBLOCK', 39, 'TDH.MEM.RANGE.UNBLOCK'],
  ['PHYMEM_CACHE_WB', 40, 'TDH.PHYMEM.CACHE.WB'],
  ['PHYMEM_PAGE_WBINVD', 41, 'TDH.PHYMEM.PAGE.WBINVD'],
];

// Reference §2.1, "Other leaves exist": 5 PAGE.RELOCATE, 12/14 MEM.RD/WR, 26/43 VP.RD/WR.
const OTHER_SEAMCALL_LEAVES: readonly [SeamcallLeafName, number, string][] = [
  ['MEM_PAGE_RELOCATE', 5, 'TDH.MEM.PAGE.RELOCATE'],
  ['MEM_RD', 12, 'TDH.MEM.RD'],
  ['MEM_WR', 14, 'TDH.MEM.WR'],
  ['VP_RD', 26, 'TDH.VP.RD'],
  ['VP_WR', 43, 'TDH.VP.WR'],
];

// Reference §2.2.
const TDCALL_LEAVES: readonly [TdcallLeafName, number, string][] = [
  ['VP_VMCALL', 0, 'TDG.VP.VMCALL'],
  ['VP_INFO', 1, 'TDG.VP.INFO'],
  ['VP_VEINFO_GET', 3, 'TDG.VP.VEINFO.GET'],
  ['MEM_PAGE_ACCEPT', 6, 'TDG.MEM.PAGE.ACCEPT'],
  ['VM_RD', 7, 'TDG.VM.RD'],
  ['VM_WR', 8, 'TDG.VM.WR'],
];

describe('SEAMCALL leaf numbers (reference §2.1)', () => {
  it.each(SEAMCALL_LEAVES)('%s = %i (%s)', (constant, leaf, name) => {
    expect(SeamcallLeaf[constant]).toBe(leaf);
    expect(seamcallLeafName(leaf)).toBe(name);
  });

  it.each(OTHER_SEAMCALL_LEAVES)('other leaf %s = %i (%s)', (constant, leaf, name) => {
    expect(SeamcallLeaf[constant]).toBe(leaf);
    expect(seamcallLeafName(leaf)).toBe(name);
  });

  it('names no leaf the model does not list', () => {
    expect(seamcallLeafName(0xffff)).toBeUndefined();
    // Not a leaf number at all (wider than RAX bits 15:0, negative): refused, not "unknown".
    expect(() => seamcallLeafName(-1)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', argument: 'leaf' }),
    );
    expect(() => seamcallLeafName(0x10000)).toThrow(expect.objectContaining({ argument: 'leaf' }));
  });

  it('gives every constant a distinct number', () => {
    const numbers = Object.values(SeamcallLeaf);
    expect(new Set(numbers).size).toBe(numbers.length);
  });
});

describe('TDCALL leaf numbers (reference §2.2)', () => {
  it.each(TDCALL_LEAVES)('%s = %i (%s)', (constant, leaf, name) => {
    expect(TdcallLeaf[constant]).toBe(leaf);
    expect(tdcallLeafName(leaf)).toBe(name);
  });

  it('defines exactly the TDCALL leaves of the reference table', () => {
    expect(Object.keys(TdcallLeaf).sort()).toEqual(TDCALL_LEAVES.map(([c]) => c).sort());
  });

  it('names no unlisted TDCALL leaf (2, 4, 5, 23, 24)', () => {
    for (const leaf of [2, 4, 5, 23, 24]) expect({ leaf, name: tdcallLeafName(leaf) }).toEqual({ leaf });
  });
});

describe('encodeLeaf / decodeLeaf (reference §2: bits 15:0 leaf, 23:16 version, all other bits 0)', () => {
  it('encodes leaf and version into RAX', () => {
    expect(encodeLeaf(6)).toBe(0x6n);
    expect(encodeLeaf(3, 1)).toBe(0x10003n);
    expect(encodeLeaf(0x1234, 0xab)).toBe(0xab1234n);
    expect(encodeLeaf(0xffff, 0xff)).toBe(0xffffffn);
  });

  it('decodes RAX into leaf and version', () => {
    expect(decodeLeaf(0x10003n)).toEqual({ leaf: 3, version: 1, valid: true });
    expect(decodeLeaf(0n)).toEqual({ leaf: 0, version: 0, valid: true });
    expect(decodeLeaf(0xffffffn)).toEqual({ leaf: 0xffff, version: 0xff, valid: true });
  });

  it('marks RAX invalid when any bit above 23 is set', () => {
    expect(decodeLeaf(0x1000006n)).toEqual({ leaf: 6, version: 0, valid: false });
    expect(decodeLeaf(0x8000000000000006n).valid).toBe(false);
    expect(decodeLeaf(0x100000000n).valid).toBe(false);
    // A value that is not a 64-bit register is refused rather than read modulo 2^64.
    expect(() => decodeLeaf(-1n)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', argument: 'rax' }),
    );
    expect(() => decodeLeaf(1n << 64n)).toThrow(expect.objectContaining({ argument: 'rax' }));
  });

  test.prop([fc.nat({ max: 0xffff }), fc.nat({ max: 0xff })])(
    'round-trips leaf and version',
    (leaf, version) => {
      expect(decodeLeaf(encodeLeaf(leaf, version))).toEqual({ leaf, version, valid: true });
    },
  );

  test.prop([fc.bigInt({ min: 0n, max: 0xffffffffffffffffn })])(
    'is valid exactly when the value is below 2^24, and splits bits 15:0 and 23:16',
    (rax) => {
      const d = decodeLeaf(rax);
      expect(d.valid).toBe(rax < 0x1000000n);
      expect(d.leaf).toBe(Number(rax % 0x10000n));
      expect(d.version).toBe(Number((rax / 0x10000n) % 0x100n));
    },
  );
});

describe('VM-exit reasons (reference §2.3) and EEQ types (§7.2)', () => {
  it('has the exit reasons EPT violation 48, EPT misconfiguration 49, TDCALL 77', () => {
    expect(VmExitReason.EPT_VIOLATION).toBe(48);
    expect(VmExitReason.EPT_MISCONFIGURATION).toBe(49);
    expect(VmExitReason.TDCALL).toBe(77);
  });

  it('has the EEQ types NONE 0, ACCEPT 1, PENDING_EPT_VIOLATION 6', () => {
    expect(EeqType).toEqual({ NONE: 0, ACCEPT: 1, PENDING_EPT_VIOLATION: 6 });
  });

  it('has the write bit of the exit qualification at bit 1 (§7.3)', () => {
    expect(EXIT_QUALIFICATION_WRITE).toBe(2n);
  });
});
