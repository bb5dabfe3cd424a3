import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  encodeLeaf,
  type GuestAccessResult,
  type GuestCpu,
  MemoryTraceSink,
  makeGprs,
  type Scheduler,
  TdcallLeaf,
  TdvmcallStatus,
  TdxModule,
  TdxStatus,
} from '@tdxsim/tdx-module';
import { expect } from 'vitest';
import { KvmVmm, type KvmVmmOptions } from '../../src/index.js';

// The pieces KVM's memory-conversion selftests are made of (tools/testing/selftests/kvm/x86/
// private_mem_conversions_test.c and the TDX UPM tests), in our own terms: a guest that converts with MapGPA and
// ACCEPT, reads and writes through either alias and checks patterns; a host that reads and writes its memory.
// Their checks call expect() only when they fail, with the same assertion: an expect() costs vitest about 8 µs of
// bookkeeping, and a pass of the selftest makes thousands of these checks (issue 14).

export const PAGE = 0x1000;
export const MIB2 = 2 ** 21;
export const GIB = 2 ** 30;
/** The shared bit at GPAW 48. */
export const S = 2 ** 47;
/** The selftest's per-vCPU data: 2M and one page, so that every range crosses a 2M boundary somewhere. */
export const PER_CPU_DATA_SIZE = MIB2 + PAGE;

/** Backing of private memory, as the selftests' `-s` option picks it. */
export interface Backing {
  readonly name: '4K' | '2M' | '1G';
  readonly options: KvmVmmOptions;
  /** The per-vCPU region is aligned to the backing size (align_up in test_mem_conversions). */
  readonly alignment: number;
}

export const BACKINGS: readonly Backing[] = [
  { name: '4K', options: {}, alignment: MIB2 },
  { name: '2M', options: { hugePages: true }, alignment: MIB2 },
  // The huge-page work maps TDX private memory at 2M at most: a 1G folio is mapped in 2M leaves.
  { name: '1G', options: { hugePages: true }, alignment: GIB },
];

/** A KVM backend with `vcpus` vCPUs (GPAW 48), its threads running. */
export async function upmVm(
  options: KvmVmmOptions,
  vcpus = 1,
  extra: { scheduler?: Scheduler; run?: boolean; skipFinalize?: boolean } = {},
): Promise<{ module: TdxModule; kvm: KvmVmm; trace: MemoryTraceSink }> {
  const trace = new MemoryTraceSink(10_000);
  const module = new TdxModule(
    { tdmr: { base: 2 ** 36, size: 2 * GIB } },
    { trace, ...(extra.scheduler === undefined ? {} : { scheduler: extra.scheduler }) },
  );
  const kvm = await KvmVmm.create(module, options, {
    gpaw: 48,
    vcpus,
    ...(extra.skipFinalize === true ? { skipFinalize: true } : {}),
  });
  if (extra.run !== false) for (const thread of kvm.run()) thread.catch(() => undefined);
  return { module, kvm, trace };
}

/**
 * A guest load of one byte at `gpa` as a kernel makes it: a #VE is handled at once, its information read and cleared
 * with TDG.VP.VEINFO.GET (a second #VE with it still valid would be a double fault). Resolves with the access's kind.
 */
export async function guestTouch(cpu: GuestCpu, gpa: number): Promise<GuestAccessResult['kind']> {
  const result = await cpu.read(gpa, 1);
  if (result.kind === 've') await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
  return result.kind;
}

/** MapGPA over [gpa, gpa + size) to shared or private, resumed from R11 on RETRY; fails the test otherwise. */
export async function mapGpa(cpu: GuestCpu, gpa: number, size: number, shared: boolean): Promise<void> {
  let next = BigInt(shared ? S + gpa : gpa);
  const end = next + BigInt(size);
  for (;;) {
    const reply = await vmcallMapGpa(cpu, next, end - next);
    if (reply.r10 === TdvmcallStatus.SUCCESS) return;
    if (reply.r10 !== TdvmcallStatus.RETRY) expect(reply.r10).toBe(TdvmcallStatus.RETRY);
    next = reply.r11;
  }
}

/** TDG.MEM.PAGE.ACCEPT over [gpa, gpa + size): at 2M where a whole aligned 2M block is in range, else at 4K. */
export async function accept(cpu: GuestCpu, gpa: number, size: number): Promise<void> {
  for (let at = gpa; at < gpa + size; ) {
    if (at % MIB2 === 0 && at + MIB2 <= gpa + size && (await tdgAccept(cpu, at, 1)) === TdxStatus.SUCCESS) {
      at += MIB2;
      continue;
    }
    const status = await tdgAccept(cpu, at, 0);
    if (status !== TdxStatus.SUCCESS)
      expect(status, `ACCEPT of 0x${at.toString(16)}`).toBe(TdxStatus.SUCCESS);
    at += PAGE;
  }
}

/** The guest converts to private: MapGPA, then ACCEPT (what a TDX guest must do before touching the pages). */
export async function toPrivate(cpu: GuestCpu, gpa: number, size: number): Promise<void> {
  await mapGpa(cpu, gpa, size, false);
  await accept(cpu, gpa, size);
}

/** The guest converts to shared: MapGPA with the shared bit. */
export function toShared(cpu: GuestCpu, gpa: number, size: number): Promise<void> {
  return mapGpa(cpu, gpa, size, true);
}

/** The guest fills [gpa, gpa + size) with `pattern` through the shared or the private alias. */
export async function guestFill(
  cpu: GuestCpu,
  gpa: number,
  size: number,
  pattern: number,
  alias: 'shared' | 'private',
): Promise<void> {
  const result = await cpu.write(alias === 'shared' ? S + gpa : gpa, new Uint8Array(size).fill(pattern));
  if (result.kind !== 'ok') expect(result.kind, `guest write at 0x${gpa.toString(16)} (${alias})`).toBe('ok');
}

/** The guest reads [gpa, gpa + size) through `alias` and expects every byte to be `pattern` (memcmp_g). */
export async function guestExpect(
  cpu: GuestCpu,
  gpa: number,
  size: number,
  pattern: number,
  alias: 'shared' | 'private',
): Promise<void> {
  const result = await cpu.read(alias === 'shared' ? S + gpa : gpa, size);
  if (result.kind !== 'ok') expect(result.kind, `guest read at 0x${gpa.toString(16)} (${alias})`).toBe('ok');
  else {
    const mismatch = firstMismatch(result.data, pattern);
    if (mismatch !== -1) expect(mismatch, `guest at 0x${gpa.toString(16)}`).toBe(-1);
  }
}

/** The host reads its memory at [gpa, gpa + size) and expects `pattern` (memcmp_h). */
export function hostExpect(kvm: KvmVmm, gpa: number, size: number, pattern: number): void {
  const mismatch = firstMismatch(kvm.readMemory(gpa, size), pattern);
  if (mismatch !== -1) expect(mismatch, `host at 0x${gpa.toString(16)}`).toBe(-1);
}

/** The host fills its memory at [gpa, gpa + size) with `pattern`. */
export function hostFill(kvm: KvmVmm, gpa: number, size: number, pattern: number): void {
  kvm.writeMemory(gpa, new Uint8Array(size).fill(pattern));
}

/**
 * Index of the first byte that is not `pattern`, or -1. Four bytes a read where the data is 4-byte aligned (whole pages
 * are), then byte by byte from the first word that differs: `findIndex` with a callback per byte took about 8 of the
 * 730 profiled CPU-seconds of the suite's two test workers (the conversions' passes compare megabytes; issue 14).
 */
export function firstMismatch(data: Uint8Array, pattern: number): number {
  let at = 0;
  if (data.byteOffset % 4 === 0 && (pattern & 0xff) === pattern) {
    const words = new Uint32Array(data.buffer, data.byteOffset, data.length >>> 2);
    const word = Math.imul(pattern & 0xff, 0x01010101) >>> 0;
    let w = 0;
    while (w < words.length && words[w] === word) w++;
    at = w * 4;
  }
  for (; at < data.length; at++) if (data[at] !== pattern) return at;
  return -1;
}
