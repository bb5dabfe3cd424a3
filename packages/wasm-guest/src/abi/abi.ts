/**
 * The ABI between a guest compiled to wasm32 and the harness, as `c/include/tdxsim.h` states it for C (the tests
 * hold the header against these values and against `@tdxsim/tdx-module`'s tables).
 */

import { invalidArgument } from '../errors.js';

/** The module the guest imports from. */
export const IMPORT_MODULE = 'tdxsim';

/** Registers of the block `tdcall` takes, in memory order (each a little-endian 64-bit value). */
export const BLOCK_REGISTERS = [
  'rax',
  'rcx',
  'rdx',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
] as const;

/** Bytes of the register block. */
export const BLOCK_BYTES = BLOCK_REGISTERS.length * 8;

/** The GPR index (operand id: RAX 0, RCX 1, RDX 2, R8 8 … R15 15) of each block slot. */
export const BLOCK_GPR_INDEX: readonly number[] = [0, 1, 2, 8, 9, 10, 11, 12, 13, 14, 15];

/** Entry points: required ones take (gpa i64, size i64, pages i32) and return an i32 result code. */
export const Entry = {
  SET_SHARED: 'tdxsim_set_shared',
  SET_PRIVATE: 'tdxsim_set_private',
  ACCEPT: 'tdxsim_accept',
  /** Optional: () -> i32, called once at boot. */
  INIT: 'tdxsim_init',
  /** Optional: (pages i64) -> i32 pointer to at least `pages` bytes, or 0. */
  PAGE_BUFFER: 'tdxsim_page_buffer',
} as const;

/** What an entry point returns (`TDXSIM_RESULT_*`). */
export const ResultCode = {
  OK: 0,
  MAP_GPA_STATUS: 1,
  MAP_GPA_RETRY: 2,
  MAP_GPA_R11_RANGE: 3,
  MAP_GPA_R11_UNALIGNED: 4,
  MAP_GPA_R11_BEYOND: 5,
  MAP_GPA_NO_PROGRESS: 6,
  MAP_GPA_CALL_BOUND: 7,
  TDCALL_FAILED: 8,
  ACCEPT_FAILED: 9,
} as const;
/** The name of a `TDXSIM_RESULT_*` code without its prefix, e.g. `MAP_GPA_RETRY`. */
export type ResultCodeName = keyof typeof ResultCode;

/** What the guest says of each page of a request (`TDXSIM_PAGE_*`). */
export const PageOutcomeCode = {
  UNCHANGED: 0,
  CONVERTED: 1,
  UNKNOWN: 2,
  /** The harness's prefill: a page the guest said nothing about counts as UNKNOWN. */
  UNWRITTEN: 0xff,
} as const;

/** RCX of TDG.VP.VMCALL exposing every register the block carries to the VMM: RDX and R8–R15. */
export const VMCALL_EXPOSE_BLOCK = 0xff04n;

const resultNames = new Map<number, ResultCodeName>(
  Object.entries(ResultCode).map(([name, code]) => [code, name as ResultCodeName]),
);

/** The name of a result code, or undefined for an integer that is not one; INVALID_ARGUMENT for a non-integer. */
export function resultCodeName(code: number): ResultCodeName | undefined {
  if (!Number.isSafeInteger(code)) throw invalidArgument('code', 'an integer', code);
  return resultNames.get(code);
}
