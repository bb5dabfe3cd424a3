import { GetQuoteBuffer, type Gprs, Reg, sharedBit, TdvmcallStatus } from '@tdxsim/tdx-module';
import type { QuoteService } from './enter-exit-options.js';
import type { KvmRun } from './kvm-run.js';
import { deliverInterrupt } from './posted-interrupts.js';
import { withStatus } from './reply.js';
import { readGuestShared, writeGuestShared } from './userspace-memory.js';
import type { VmState } from './vm-state.js';

/** QEMU's bound on a GetQuote buffer (TDX_GET_QUOTE_MAX_BUF_LEN). */
const MAX_BUFFER = 128 * 1024;
const HEADER = GetQuoteBuffer.HEADER_SIZE;

/**
 * TDG.VP.VMCALL<GetQuote>: R12 = the buffer's GPA (shared), R13 = its size. KVM refuses a private GPA
 * (INVALID_OPERAND) and hands the rest to userspace (KVM_EXIT_TDX) with the shared bit removed and SUBFUNC_UNSUPPORTED
 * preset (tdx_get_quote). Userspace, as QEMU does it (tdx_handle_get_quote): size 0 → INVALID_OPERAND; GPA or size
 * not 4K-aligned → ALIGN_ERROR; a header it cannot read, a version other than 1, a buffer over 128 KiB or an in_len
 * that does not fit → INVALID_OPERAND; no quote service → header status SERVICE_UNAVAILABLE and SUCCESS; as many
 * requests in flight as it allows → RETRY; otherwise it reads the request, marks the header IN_FLIGHT, starts the
 * generation and answers SUCCESS. The guest then waits for the header status to change (and for the event-notify
 * interrupt, if it set one up) — see {@link completeQuote}.
 */
export async function getQuote(vm: VmState, run: KvmRun, regs: Gprs): Promise<Gprs> {
  const gpa = regs[Reg.R12] as bigint;
  const size = regs[Reg.R13] as bigint;
  const shared = BigInt(sharedBit(vm.td.gpaw));
  if ((gpa & shared) === 0n) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const state = vm.enterExit;
  state.count(state.counters.userspaceExits, 'KVM_EXIT_TDX');
  const service = state.options.getQuote;
  if (service === 'unsupported') return withStatus(regs, TdvmcallStatus.SUBFUNC_UNSUPPORTED);
  const address = gpa & ~shared;
  if (size === 0n) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  if (address % 4096n !== 0n || size % 4096n !== 0n) return withStatus(regs, TdvmcallStatus.ALIGN_ERROR);
  if (address >= 1n << 52n) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const buffer = Number(address);
  const header = readGuestShared(vm, buffer, HEADER);
  if (header === undefined) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const view = new DataView(header.buffer);
  const inLength = view.getUint32(16, true);
  if (view.getBigUint64(0, true) !== GetQuoteBuffer.VERSION)
    return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  if (size > BigInt(MAX_BUFFER) || BigInt(inLength) > size - BigInt(HEADER))
    return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  if (service === 'no-qgs') {
    view.setBigUint64(8, GetQuoteBuffer.STATUS_SERVICE_UNAVAILABLE, true);
    if (!(await writeGuestShared(vm, buffer, header)))
      return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
    return withStatus(regs, TdvmcallStatus.SUCCESS);
  }
  if (state.quotesInFlight >= state.options.maxQuotesInFlight) return withStatus(regs, TdvmcallStatus.RETRY);
  const request = readGuestShared(vm, buffer + HEADER, inLength);
  if (request === undefined) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  view.setBigUint64(8, GetQuoteBuffer.STATUS_IN_FLIGHT, true);
  if (!(await writeGuestShared(vm, buffer, header))) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  state.quotesInFlight++;
  const task = { buffer, payload: Number(size) - HEADER, header, request };
  const done = vm.module.runAs('kvm.qgs', () => completeQuote(vm, run, service, task));
  done.catch(() => {});
  return withStatus(regs, TdvmcallStatus.SUCCESS);
}

/**
 * The quote service answers, later (a thread of its own, `kvm.qgs`, with a yield point before it completes, so an
 * explorer chooses when): userspace writes the quote after the header, sets out_len and the status — SUCCESS, or
 * ERROR when the service failed or the quote does not fit — and sends the event-notify interrupt, if the guest set one
 * up, to the vCPU that did (tdx_get_quote_completion, tdx_inject_interrupt).
 */
async function completeQuote(
  vm: VmState,
  run: KvmRun,
  service: QuoteService,
  task: { buffer: number; payload: number; header: Uint8Array; request: Uint8Array },
): Promise<void> {
  const state = vm.enterExit;
  await vm.later('kvm.get-quote', 'complete', task.buffer);
  let status: bigint = GetQuoteBuffer.STATUS_SUCCESS;
  let quote: Uint8Array | undefined;
  try {
    quote = await service(task.request);
    if (!(quote instanceof Uint8Array) || quote.length > task.payload) status = GetQuoteBuffer.STATUS_ERROR;
  } catch {
    status = GetQuoteBuffer.STATUS_ERROR;
  }
  state.quotesInFlight--;
  if (vm.dead !== undefined) return;
  const view = new DataView(task.header.buffer);
  view.setUint32(20, 0, true);
  if (status === GetQuoteBuffer.STATUS_SUCCESS && quote !== undefined) {
    if (await writeGuestShared(vm, task.buffer + HEADER, quote)) view.setUint32(20, quote.length, true);
  }
  view.setBigUint64(8, status, true);
  await writeGuestShared(vm, task.buffer, task.header);
  state.counters.quotesCompleted++;
  const notify = state.eventNotify;
  if (notify !== undefined) {
    state.counters.notifyInterrupts++;
    deliverInterrupt(vm, run, notify.vcpu, notify.vector);
  }
}
