/**
 * Issue 10, "What must be shown" (no usable window): a VMM that parks mid-conversion while other tasks read and
 * write the pages — on the converting vCPU and on another one. No access to a page in conversion succeeds as private:
 * the guest refuses it (`in-conversion`) at once, and the module sees no private access to those pages meanwhile.
 */
import { assertInvariants, type GuestCpu } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { TdGuest } from '../src/index.js';
import { setupGuestTd, type VmmStep } from './test-vmm.js';
import { vmmGate } from './vmm-gate.js';

const PAGE = 4096;
const MIB = 2 ** 20;
const RANGE = { start: 2 * MIB, end: 2 * MIB + 8 * PAGE };
const OUTSIDE = 3 * MIB;

/** Records every guest access that succeeded at the module, per vCPU: [gpa, length]. */
function recordAccesses(cpu: GuestCpu, into: { gpa: number; length: number; vcpu: number }[]): void {
  for (const name of ['read', 'write'] as const) {
    const inner = (cpu[name] as (...args: never[]) => ReturnType<GuestCpu['read']>).bind(cpu);
    (cpu as unknown as Record<string, unknown>)[name] = async (gpa: number, arg: number | Uint8Array) => {
      const result = await inner(...([gpa, arg] as never[]));
      if (result.kind === 'ok') into.push({ gpa, length: result.data.length, vcpu: cpu.index });
      return result;
    };
  }
}

async function setup(match: (step: VmmStep) => boolean) {
  const g = vmmGate(match);
  const { module, td } = await setupGuestTd({ vcpus: 2, vmm: { hook: g.hook } });
  const cpus = [td.guest(0), td.guest(1)];
  const accesses: { gpa: number; length: number; vcpu: number }[] = [];
  for (const cpu of cpus) recordAccesses(cpu, accesses);
  const guest = await TdGuest.boot(cpus, { memoryBytes: 16 * MIB });
  return { module, td, guest, gate: g, accesses };
}

/** Every page of RANGE, read and written from both vCPUs: what the guest answered. */
async function touchAll(guest: TdGuest) {
  const answers: string[] = [];
  for (let gpa = RANGE.start; gpa < RANGE.end; gpa += PAGE) {
    for (const vcpu of [0, 1]) {
      const read = await guest.read(gpa + 8, 4, { vcpu });
      const write = await guest.write(gpa + 16, new Uint8Array([9, 9]), { vcpu });
      answers.push(read.kind === 'ok' ? 'ok' : read.reason, write.kind === 'ok' ? 'ok' : write.reason);
    }
  }
  return answers;
}

const inside = (gpa: number) => gpa >= RANGE.start && gpa < RANGE.end;

describe('private → shared: from the moment the conversion starts, its pages are not private memory', () => {
  it.each([
    ['before the VMM converts anything (parked at the MapGPA exit)', (s: VmmStep) => s.kind === 'map-gpa'],
    [
      'in the middle of the zap (parked before the REMOVE of the 3rd page)',
      (s: VmmStep) => s.kind === 'remove' && s.gpa === RANGE.start + 2 * PAGE,
    ],
  ])('%s: every read and write of the pages fails at once, on both vCPUs', async (_when, match) => {
    const t = await setup(match);
    expect(await t.guest.setPrivate(RANGE.start, RANGE.end - RANGE.start)).toMatchObject({ kind: 'ok' });
    expect((await t.guest.write(RANGE.start, new Uint8Array([1]))).kind).toBe('ok');
    const conversion = t.guest.setShared(RANGE.start, RANGE.end - RANGE.start, { vcpu: 0 });
    await t.gate.parked;
    const from = t.accesses.length;
    expect(t.guest.ledger.runs(RANGE)).toEqual([{ ...RANGE, state: 'converting' }]);
    expect(new Set(await touchAll(t.guest))).toEqual(new Set(['in-conversion']));
    // Memory outside the conversion is usable meanwhile, from the other vCPU.
    expect((await t.guest.read(OUTSIDE, 4, { vcpu: 1 })).kind).toBe('ok');
    expect(t.accesses.slice(from).filter((a) => inside(a.gpa))).toEqual([]);
    t.gate.open();
    expect(await conversion).toMatchObject({ kind: 'ok' });
    expect(new Set(await touchAll(t.guest))).toEqual(new Set(['not-private']));
    expect(t.accesses.slice(from).filter((a) => inside(a.gpa))).toEqual([]);
    expect(t.guest.check(t.module, t.td.tdr)).toEqual([]);
    assertInvariants(t.module);
  });

  it('an access that began before the conversion finishes first; the conversion waits for it', async () => {
    // The read's lazy accept is parked at its AUG: the conversion of its page queues behind it.
    const t = await setup((s) => s.kind === 'aug' && s.gpa === RANGE.start);
    const read = t.guest.read(RANGE.start, 4, { vcpu: 1 });
    await t.gate.parked;
    const conversion = t.guest.setShared(RANGE.start, RANGE.end - RANGE.start, { vcpu: 0 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.guest.ledger.stateOf(RANGE.start)).toBe('private-unaccepted');
    t.gate.open();
    expect((await read).kind).toBe('ok');
    expect(await conversion).toMatchObject({ kind: 'ok' });
    expect(t.guest.ledger.runs(RANGE)).toEqual([{ ...RANGE, state: 'shared' }]);
    expect(t.guest.check(t.module, t.td.tdr)).toEqual([]);
  });
});

describe('shared → private: pages are usable only once their accept succeeded', () => {
  it.each([
    ['parked at the MapGPA exit', (s: VmmStep) => s.kind === 'map-gpa' && s.call.r12 < 2n ** 47n],
    [
      'parked at the AUG of the 5th page (the accept is under way)',
      (s: VmmStep) => s.kind === 'aug' && s.gpa === RANGE.start + 4 * PAGE,
    ],
  ])('%s: reads and writes of the pages fail at once', async (_when, match) => {
    const t = await setup(match);
    expect(await t.guest.setShared(RANGE.start, RANGE.end - RANGE.start)).toMatchObject({ kind: 'ok' });
    const conversion = t.guest.setPrivate(RANGE.start, RANGE.end - RANGE.start, { vcpu: 1 });
    await t.gate.parked;
    const from = t.accesses.length;
    expect(new Set(await touchAll(t.guest))).toEqual(new Set(['in-conversion']));
    expect(t.accesses.slice(from).filter((a) => inside(a.gpa))).toEqual([]);
    t.gate.open();
    expect(await conversion).toMatchObject({ kind: 'ok' });
    expect(new Set(await touchAll(t.guest))).toEqual(new Set(['ok']));
    expect(t.guest.check(t.module, t.td.tdr)).toEqual([]);
    assertInvariants(t.module);
  });
});
