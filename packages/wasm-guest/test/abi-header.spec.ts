import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  decodeStatus,
  PAGE_SIZE_4K,
  PageLevel,
  STATUS_CODE_MASK,
  TDX_HYPERCALL_STANDARD,
  TdcallLeaf,
  TdvmcallStatus,
  TdvmcallSubfunction,
  TdxStatus,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  BLOCK_GPR_INDEX,
  BLOCK_REGISTERS,
  HEADER_DIR,
  PageOutcomeCode,
  ResultCode,
  VMCALL_EXPOSE_BLOCK,
} from '../src/index.js';

const header = readFileSync(`${HEADER_DIR}tdxsim.h`, 'utf8');
const rust = readFileSync(
  fileURLToPath(new URL('../examples/rust/kernel_guest.rs', import.meta.url)),
  'utf8',
);

/** Every object-like `#define TDXSIM_NAME <integer>` of the header, as bigint. */
function headerConstants(): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const match of header.matchAll(/^#define (TDXSIM_[A-Z0-9_]+) (0x[0-9a-f]+|\d+)(?:ull)?\b/gm)) {
    out.set(match[1] as string, BigInt(match[2] as string));
  }
  return out;
}

const statusClass = (status: bigint): bigint => BigInt(decodeStatus(status).clazz);

/** What each header constant must equal: the simulator's tables, or this package's ABI module. */
const EXPECTED: Record<string, bigint> = {
  TDXSIM_REGS_COUNT: BigInt(BLOCK_REGISTERS.length),
  TDXSIM_TDG_VP_VMCALL: BigInt(TdcallLeaf.VP_VMCALL),
  TDXSIM_TDG_VP_INFO: BigInt(TdcallLeaf.VP_INFO),
  TDXSIM_TDG_VP_VEINFO_GET: BigInt(TdcallLeaf.VP_VEINFO_GET),
  TDXSIM_TDG_MEM_PAGE_ACCEPT: BigInt(TdcallLeaf.MEM_PAGE_ACCEPT),
  TDXSIM_VP_INFO_GPAW_MASK: 0x3fn,
  TDXSIM_LEVEL_4K: BigInt(PageLevel.L4K),
  TDXSIM_LEVEL_2M: BigInt(PageLevel.L2M),
  TDXSIM_LEVEL_1G: BigInt(PageLevel.L1G),
  TDXSIM_PAGE_SIZE: BigInt(PAGE_SIZE_4K),
  TDXSIM_VMCALL_EXPOSE_BLOCK: VMCALL_EXPOSE_BLOCK,
  TDXSIM_TDVMCALL_STANDARD: TDX_HYPERCALL_STANDARD,
  TDXSIM_TDVMCALL_MAP_GPA: TdvmcallSubfunction.MAP_GPA,
  TDXSIM_TDVMCALL_SUCCESS: TdvmcallStatus.SUCCESS,
  TDXSIM_TDVMCALL_RETRY: TdvmcallStatus.RETRY,
  TDXSIM_TDVMCALL_INVALID_OPERAND: TdvmcallStatus.INVALID_OPERAND,
  TDXSIM_TDVMCALL_GPA_INUSE: TdvmcallStatus.GPA_INUSE,
  TDXSIM_TDVMCALL_ALIGN_ERROR: TdvmcallStatus.ALIGN_ERROR,
  TDXSIM_TDVMCALL_SUBFUNC_UNSUPPORTED: TdvmcallStatus.SUBFUNC_UNSUPPORTED,
  TDXSIM_STATUS_CODE_MASK: STATUS_CODE_MASK,
  TDXSIM_STATUS_CLASS_OPERAND: statusClass(TdxStatus.OPERAND_INVALID),
  TDXSIM_STATUS_CLASS_BUSY: statusClass(TdxStatus.OPERAND_BUSY),
  TDXSIM_STATUS_CLASS_EPT: statusClass(TdxStatus.PAGE_SIZE_MISMATCH),
  TDXSIM_TDX_SUCCESS: TdxStatus.SUCCESS,
  TDXSIM_TDX_OPERAND_INVALID: TdxStatus.OPERAND_INVALID,
  TDXSIM_TDX_OPERAND_BUSY: TdxStatus.OPERAND_BUSY,
  TDXSIM_TDX_PAGE_ALREADY_ACCEPTED: TdxStatus.PAGE_ALREADY_ACCEPTED,
  TDXSIM_TDX_PAGE_SIZE_MISMATCH: TdxStatus.PAGE_SIZE_MISMATCH,
  ...Object.fromEntries(
    Object.entries(ResultCode).map(([name, code]) => [`TDXSIM_RESULT_${name}`, BigInt(code)]),
  ),
  ...Object.fromEntries(
    Object.entries(PageOutcomeCode).map(([name, code]) => [`TDXSIM_PAGE_${name}`, BigInt(code)]),
  ),
};

describe('tdxsim.h', () => {
  it('states every constant as the simulator and the harness have it, and states no constant unchecked', () => {
    const constants = headerConstants();
    expect([...constants.keys()].sort()).toEqual(Object.keys(EXPECTED).sort());
    for (const [name, value] of constants) expect({ name, value }).toEqual({ name, value: EXPECTED[name] });
  });

  it('lays the register block out in the harness order, and exposes exactly its VMM-visible registers', () => {
    const struct = /struct tdxsim_regs \{([^}]*)\}/.exec(header)?.[1] ?? '';
    const fields = [...struct.matchAll(/uint64_t (\w+);/g)].map((m) => m[1]);
    expect(fields).toEqual([...BLOCK_REGISTERS]);
    // Every carried register but RAX (the leaf) and RCX (the bitmap itself) is exposed to the VMM.
    const exposable = BLOCK_GPR_INDEX.filter((gpr) => gpr > 1).reduce(
      (bits, gpr) => bits | (1n << BigInt(gpr)),
      0n,
    );
    expect(VMCALL_EXPOSE_BLOCK).toBe(exposable);
  });

  it('agrees with the constants the Rust example restates', () => {
    const rustConstants = new Map(
      [...rust.matchAll(/^const ([A-Z0-9_]+): [iu]\d+ = (0x[0-9a-f]+|\d+);/gm)].map((m) => [
        m[1] as string,
        BigInt(m[2] as string),
      ]),
    );
    const headerNames: Record<string, string> = {
      TDX_SUCCESS: 'TDXSIM_TDX_SUCCESS',
      PAGE: 'TDXSIM_PAGE_SIZE',
    };
    let checked = 0;
    for (const [name, value] of rustConstants) {
      if (name === 'MAX_STALLS') continue;
      const inHeader = headerNames[name] ?? `TDXSIM_${name}`;
      expect({ name, value }).toEqual({ name, value: EXPECTED[inHeader] });
      checked++;
    }
    expect(checked).toBeGreaterThan(15);
  });
});
