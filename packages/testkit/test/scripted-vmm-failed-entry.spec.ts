/**
 * ScriptedVmm.onTdExit tells a failed TDH.VP.ENTER from a TD exit by RAX bit 63 alone: from 2^63 up (an error status
 * such as OPERAND_BUSY) it enters again on a later turn without touching the TD; below it (up to 2^63 − 1) RAX is an
 * exit and its low 16 bits are the exit reason.
 */
import { GuestIds, guestModule, type TdGuest } from '@tdxsim/guest';
import {
  composeTd,
  type Gprs,
  type GprValues,
  makeGprs,
  Reg,
  TdvmcallStatus,
  TdvmcallSubfunction,
  TdxStatus,
  VmExitReason,
} from '@tdxsim/tdx-module';
import { expect, test, vi } from 'vitest';
import { HONEST_STEP, type ScriptedVmm, scriptedVmm } from '../src/index.js';

const GIB = 2 ** 30;
const BIT_63 = 1n << 63n;

async function setUp() {
  const composed = await composeTd<TdGuest>({
    vmm: scriptedVmm({ steps: [HONEST_STEP], order: 'cycle' }),
    guest: { module: guestModule({ memoryBytes: 2 * GIB, policy: 'strict' }), id: GuestIds.Guest },
    sim: { module: { tdmr: { base: 2 ** 36, size: 4 * GIB } } },
  });
  const vmm = composed.hosted.vmm as ScriptedVmm;
  const onEptViolation = vi.spyOn(vmm.core, 'onEptViolation').mockResolvedValue(undefined);
  return { vmm, td: vmm.td, onEptViolation };
}

/**
 * Answers an exit whose RAX is `rax` (R8 a private GPA, or the registers `more` gives), and says whether the answer
 * came before a callback queued on the event loop's next turn just before it: a failed entry is answered on a later
 * turn, an exit at once.
 */
async function answer(
  vmm: ScriptedVmm,
  rax: bigint,
  more: GprValues = { r8: 5n * 4096n },
): Promise<{ regs: Gprs; beforeNextTurn: boolean }> {
  let nextTurn = false;
  setImmediate(() => {
    nextTurn = true;
  });
  const regs = await vmm.onTdExit({
    tdr: vmm.td.tdr,
    tdvpr: vmm.td.tdvprs[0] as number,
    vcpuIndex: 0,
    regs: makeGprs({ ...more, rax }),
  });
  return { regs, beforeNextTurn: !nextTurn };
}

test.each([
  ['OPERAND_BUSY', TdxStatus.OPERAND_BUSY],
  ['2^63', BIT_63],
  ['2^64 − 1', (1n << 64n) - 1n],
])('RAX = %s: a failed entry, the core is not called and the registers are empty', async (_name, rax) => {
  const { vmm, onEptViolation } = await setUp();
  const { regs, beforeNextTurn } = await answer(vmm, rax);
  expect(onEptViolation).not.toHaveBeenCalled();
  expect(regs).toEqual(makeGprs());
  expect(beforeNextTurn).toBe(false);
});

test('RAX = 2^63 − 1: an exit (reason 0xffff, not one the backend handles), answered at once', async () => {
  const { vmm, onEptViolation } = await setUp();
  const { regs, beforeNextTurn } = await answer(vmm, BIT_63 - 1n);
  expect(onEptViolation).not.toHaveBeenCalled();
  expect(regs).toEqual(makeGprs());
  expect(beforeNextTurn).toBe(true);
});

// The reason is read from a number below 2^53 (RAX converts exactly) and from the BigInt above: the same answer.
test.each([
  ['every bit above the reason up to 62', BIT_63],
  ['every bit above the reason up to 52', 1n << 53n],
  ['bit 53 alone above the reason', (1n << 53n) + (1n << 16n)],
])('RAX below 2^63 with %s set: an EPT violation goes to the core', async (_name, above) => {
  const { vmm, onEptViolation } = await setUp();
  const rax = above - (1n << 16n) + BigInt(VmExitReason.EPT_VIOLATION);
  const { regs, beforeNextTurn } = await answer(vmm, rax);
  expect(onEptViolation).toHaveBeenCalledOnce();
  expect(onEptViolation.mock.calls[0]?.[0][Reg.RAX]).toBe(rax);
  expect(regs).toEqual(makeGprs());
  expect(beforeNextTurn).toBe(true);
});

test('RAX = 2^53 + 77 (odd, no number holds it): a TDCALL exit, its MapGPA answered', async () => {
  const { vmm, onEptViolation } = await setUp();
  // Read through a number, RAX would round to 2^53 + 76 (reason 76, not one the backend handles: empty registers).
  const rax = (1n << 53n) + BigInt(VmExitReason.TDCALL);
  expect(BigInt(Number(rax))).toBe(rax - 1n);
  // A MapGPA of a start not 4K-aligned: the backend answers ALIGN_ERROR with R11 = R12, without converting anything.
  const r12 = 5n * 4096n + 1n;
  const { regs } = await answer(vmm, rax, { r10: 0n, r11: TdvmcallSubfunction.MAP_GPA, r12, r13: 4096n });
  expect(onEptViolation).not.toHaveBeenCalled();
  expect(regs).toEqual(makeGprs({ r10: TdvmcallStatus.ALIGN_ERROR, r11: r12 }));
  expect(vmm.record.mapGpaCalls).toBe(1);
});
