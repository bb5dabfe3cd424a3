/**
 * Issue 10, "What must be shown" (faults): however a conversion ends — the backend throws at each step of a zap,
 * the vCPU's host thread ends, the caller aborts at each point — every page of the request ends in a state the guest
 * can vouch for (checked against the module) or quarantined; the ledger never over-claims.
 */
import { kvmVmm } from '@tdxsim/host-kvm';
import {
  assertInvariants,
  composeTd,
  SeamcallLeaf,
  TdcallLeaf,
  type TdxModule,
  TdxSimError,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  acceptRange,
  type ConversionOutcome,
  guestPresets,
  mapGpa,
  type PageState,
  TdGuest,
} from '../src/index.js';
import { setupGuestTd, type TestVmmOptions, type VmmStep } from './test-vmm.js';
import { vmmGate } from './vmm-gate.js';

const PAGE = 4096;
const MIB = 2 ** 20;
const START = 2 * MIB;
const PAGES = 8;
const END = START + PAGES * PAGE;

async function setup(vmm: TestVmmOptions = {}, vcpus = 1) {
  const t = await setupGuestTd({ vcpus, vmm });
  const cpus = Array.from({ length: vcpus }, (_, i) => t.td.guest(i));
  const guest = await TdGuest.boot(cpus, { memoryBytes: 16 * MIB });
  return { ...t, guest };
}

/** The ledger claims nothing the module contradicts, and nothing is left in conversion. */
function vouched(guest: TdGuest, module: TdxModule, tdr: number): void {
  expect(guest.check(module, tdr)).toEqual([]);
  expect([...guest.ledger.entries()].filter((run) => run.state === 'converting')).toEqual([]);
  assertInvariants(module);
}

/** Each page of [START, END) as its ledger state. */
const states = (guest: TdGuest): PageState[] =>
  Array.from({ length: PAGES }, (_, i) => guest.ledger.stateOf(START + i * PAGE) as PageState);

const lost = (error: unknown) => TdxSimError.is(error) && error.code === 'VCPU_NOT_RESUMED';

describe('the backend throws at each step of a zap (private → shared)', () => {
  const steps = ['map-gpa', 'block', 'track', 'kick', 'remove'] as const;
  it.each(steps.flatMap((step) => [0, 3, 7].map((page) => [step, page] as const)))(
    'throws at %s (page %i): the lost call quarantines what it asked for, the rest is as it was',
    async (step, page) => {
      let armed = false;
      const t = await setup({
        hook: (s: VmmStep) => {
          if (!armed || s.kind !== step) return;
          if (s.kind !== 'map-gpa' && s.gpa !== START + page * PAGE) return;
          throw new Error(`backend failure at ${step}`);
        },
      });
      expect(await t.guest.setPrivate(START, PAGES * PAGE)).toMatchObject({ kind: 'ok' });
      armed = true;
      await expect(t.guest.setShared(START, PAGES * PAGE)).rejects.toSatisfy(lost);
      // One request for the whole range never came back: the guest cannot vouch for any of its pages.
      expect(states(t.guest)).toEqual(Array(PAGES).fill('quarantined'));
      expect(t.guest.ledger.stateOf(START - PAGE)).toBe('private-unaccepted');
      expect(t.guest.ledger.stateOf(END)).toBe('private-unaccepted');
      vouched(t.guest, t.module, t.td.tdr);
      // The module shows why: pages the VMM had zapped are not private any more; none is claimed accepted.
      if (step !== 'map-gpa' && step !== 'block')
        expect(t.module.privatePage(t.td.tdr, START + page * PAGE).state).not.toBe('MAPPED');
    },
  );

  it('in chunks: what earlier replies acknowledged is shared, the call that never came back quarantines the rest', async () => {
    let armed = false;
    const t = await setup({
      chunkPages: 2,
      hook: (s: VmmStep) => {
        if (armed && s.kind === 'remove' && s.gpa === START + 5 * PAGE) throw new Error('backend failure');
      },
    });
    expect(await t.guest.setPrivate(START, PAGES * PAGE)).toMatchObject({ kind: 'ok' });
    armed = true;
    await expect(t.guest.setShared(START, PAGES * PAGE)).rejects.toSatisfy(lost);
    expect(states(t.guest)).toEqual([
      'shared',
      'shared',
      'shared',
      'shared',
      'quarantined',
      'quarantined',
      'quarantined',
      'quarantined',
    ]);
    for (let i = 0; i < 4; i++) {
      expect(t.module.sharedEpt(t.td.tdr).lookup(START + i * PAGE)).toBeDefined();
      expect(t.module.privatePage(t.td.tdr, START + i * PAGE).state).not.toBe('MAPPED');
    }
    vouched(t.guest, t.module, t.td.tdr);
    // The other vCPU of a TD goes on: here there is none, and the lost one refuses every later TDCALL.
    await expect(t.guest.read(START + 6 * PAGE, 1)).resolves.toMatchObject({ reason: 'quarantined' });
  });
});

describe('the vCPU host thread ends', () => {
  it('at a MapGPA to private: the request is quarantined, the conversion rejects, a second vCPU still works', async () => {
    let armed = false;
    const t = await setup(
      { hook: (s: VmmStep) => (armed && s.kind === 'map-gpa' && s.vcpu === 0 ? 'stop' : undefined) },
      2,
    );
    expect(await t.guest.setShared(START, PAGES * PAGE)).toMatchObject({ kind: 'ok' });
    armed = true;
    await expect(t.guest.setPrivate(START, PAGES * PAGE, { vcpu: 0 })).rejects.toSatisfy(lost);
    expect(states(t.guest)).toEqual(Array(PAGES).fill('quarantined'));
    vouched(t.guest, t.module, t.td.tdr);
    expect(await t.guest.setShared(4 * MIB, PAGE, { vcpu: 1 })).toMatchObject({ kind: 'ok' });
    vouched(t.guest, t.module, t.td.tdr);
  });

  it('in the middle of the accept: the accepted prefix is private-accepted, the block in flight and the rest quarantined', async () => {
    let armed = false;
    const t = await setup({
      hook: (s: VmmStep) => (armed && s.kind === 'aug' && s.gpa === START + 3 * PAGE ? 'stop' : undefined),
    });
    expect(await t.guest.setShared(START, PAGES * PAGE)).toMatchObject({ kind: 'ok' });
    armed = true;
    await expect(t.guest.setPrivate(START, PAGES * PAGE)).rejects.toSatisfy(lost);
    expect(states(t.guest)).toEqual([
      'private-accepted',
      'private-accepted',
      'private-accepted',
      'quarantined',
      'quarantined',
      'quarantined',
      'quarantined',
      'quarantined',
    ]);
    vouched(t.guest, t.module, t.td.tdr);
  });

  it('at the first touch of a page (its EPT violation): the read rejects and claims nothing', async () => {
    const t = await setup({ hook: (s: VmmStep) => (s.kind === 'aug' ? 'stop' : undefined) });
    await expect(t.guest.read(START, 4)).rejects.toSatisfy(lost);
    expect(t.guest.ledger.stateOf(START)).toBe('private-unaccepted');
    vouched(t.guest, t.module, t.td.tdr);
  });

  it('at the lazy ACCEPT itself: the read rejects and the page is quarantined', async () => {
    const t = await setupGuestTd({});
    const cpu = t.td.guest(0);
    const inner = cpu.tdcall.bind(cpu);
    cpu.tdcall = async (rax, regs) => {
      if (Number(rax & 0xffffn) === TdcallLeaf.MEM_PAGE_ACCEPT)
        throw new TdxSimError('VCPU_NOT_RESUMED', 'the VMM never entered the vCPU again');
      return inner(rax, regs);
    };
    const guest = await TdGuest.boot(cpu, { memoryBytes: 16 * MIB });
    await expect(guest.read(START, 4)).rejects.toSatisfy(lost);
    expect(guest.ledger.stateOf(START)).toBe('quarantined');
    vouched(guest, t.module, t.td.tdr);
  });

  it('during acceptAll: the block in flight is quarantined, the rest stays unaccepted', async () => {
    const t = await setup({
      hook: (s: VmmStep) => (s.kind === 'aug' && s.gpa === 3 * PAGE ? 'stop' : undefined),
    });
    await expect(t.guest.acceptAll()).rejects.toSatisfy(lost);
    expect([0, 1, 2, 3, 4].map((i) => t.guest.ledger.stateOf(i * PAGE))).toEqual([
      'private-accepted',
      'private-accepted',
      'private-accepted',
      'quarantined',
      'private-unaccepted',
    ]);
    vouched(t.guest, t.module, t.td.tdr);
  });
});

describe('abort at each point', () => {
  /** The outcome covers the request in order, and the ledger agrees with it page by page. */
  function consistent(guest: TdGuest, outcome: ConversionOutcome, target: PageState): void {
    if (outcome.kind === 'ok') return;
    let at = START;
    for (const run of outcome.pages) {
      expect(run.start).toBe(at);
      at = run.end;
      for (const part of guest.ledger.runs(run)) {
        if (run.outcome === 'unknown') expect(part.state).toBe('quarantined');
        if (run.outcome === 'converted') expect(part.state).toBe(target);
        if (run.outcome === 'unchanged') expect(part.state).not.toBe(target);
      }
    }
    expect(at).toBe(END);
  }

  it('an already aborted signal: no hypercall, every page unchanged', async () => {
    const t = await setup();
    const controller = new AbortController();
    controller.abort('stop');
    const outcome = await t.guest.setShared(START, PAGES * PAGE, { signal: controller.signal });
    expect(outcome).toEqual({
      kind: 'aborted',
      reason: 'stop',
      mapGpaCalls: 0,
      acceptCalls: 0,
      pages: [{ start: START, end: END, outcome: 'unchanged' }],
    });
    expect(t.vmm.calls).toEqual([]);
    vouched(t.guest, t.module, t.td.tdr);
  });

  it('while waiting for an overlapping conversion: leaves the queue at once, nothing touched', async () => {
    const gate = vmmGate((s) => s.kind === 'map-gpa');
    const t = await setup({ hook: gate.hook });
    const holder = t.guest.setShared(START, PAGES * PAGE);
    const controller = new AbortController();
    const waiter = t.guest.setPrivate(START, PAGE, { signal: controller.signal });
    await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    const aborted = await waiter;
    expect(aborted).toMatchObject({ kind: 'aborted', mapGpaCalls: 0, acceptCalls: 0 });
    gate.open();
    expect(await holder).toMatchObject({ kind: 'ok' });
    expect(t.vmm.calls).toHaveLength(1);
    vouched(t.guest, t.module, t.td.tdr);
  });

  it.each([1, 3, 7])(
    'to shared, between MapGPA calls (after call %i): no further call; acknowledged pages shared, the asked rest quarantined',
    async (after) => {
      const controller = new AbortController();
      const t = await setup({
        chunkPages: 1,
        hook: (s: VmmStep) => {
          if (s.kind === 'map-gpa' && s.index === after - 1) controller.abort('enough');
        },
      });
      const outcome = await t.guest.setShared(START, PAGES * PAGE, { signal: controller.signal });
      expect(outcome).toMatchObject({ kind: 'aborted', reason: 'enough', mapGpaCalls: after });
      expect(t.vmm.calls).toHaveLength(after);
      expect(states(t.guest)).toEqual([
        ...Array(after).fill('shared'),
        ...Array(PAGES - after).fill('quarantined'),
      ]);
      consistent(t.guest, outcome, 'shared');
      vouched(t.guest, t.module, t.td.tdr);
    },
  );

  it.each([0, 2, 5])(
    'to private, during the accept (at page %i): accepted pages converted, the acknowledged rest quarantined, no TDCALL after',
    async (page) => {
      const controller = new AbortController();
      let armed = false;
      const t = await setup({
        hook: (s: VmmStep) => {
          if (armed && s.kind === 'aug' && s.gpa === START + page * PAGE) controller.abort();
        },
      });
      expect(await t.guest.setShared(START, PAGES * PAGE)).toMatchObject({ kind: 'ok' });
      armed = true;
      const outcome = await t.guest.setPrivate(START, PAGES * PAGE, { signal: controller.signal });
      // The ACCEPT in progress when the signal fired completes (a TDCALL cannot be taken back); none after it.
      expect(outcome).toMatchObject({ kind: 'aborted', mapGpaCalls: 1, acceptCalls: page + 1 });
      expect(states(t.guest)).toEqual([
        ...Array(page + 1).fill('private-accepted'),
        ...Array(PAGES - page - 1).fill('quarantined'),
      ]);
      consistent(t.guest, outcome, 'private-accepted');
      vouched(t.guest, t.module, t.td.tdr);
    },
  );

  it('acceptAll: stops before its next ACCEPT; what is not accepted stays unaccepted', async () => {
    const controller = new AbortController();
    const t = await setup({
      hook: (s: VmmStep) => {
        if (s.kind === 'aug' && s.gpa === 5 * PAGE) controller.abort();
      },
    });
    const outcome = await t.guest.acceptAll({ signal: controller.signal });
    expect(outcome).toMatchObject({ kind: 'interrupted', acceptedEnd: 6 * PAGE, inFlightEnd: 6 * PAGE });
    expect(t.guest.ledger.stateOf(5 * PAGE)).toBe('private-accepted');
    expect(t.guest.ledger.stateOf(6 * PAGE)).toBe('private-unaccepted');
    vouched(t.guest, t.module, t.td.tdr);
  });

  it('the building blocks: mapGpa and acceptRange stop before their next TDCALL', async () => {
    const controller = new AbortController();
    const t = await setup({
      chunkPages: 1,
      hook: (s: VmmStep) => {
        if ((s.kind === 'map-gpa' && s.index === 2) || (s.kind === 'aug' && s.gpa === START + PAGE))
          controller.abort('now');
      },
    });
    const cpu = t.td.guest(0);
    const range = { start: START, end: END };
    expect(
      await mapGpa(cpu, 48, range, true, guestPresets.strict.mapGpa, { signal: controller.signal }),
    ).toEqual({
      kind: 'interrupted',
      calls: 3,
      retries: 3,
      convertedEnd: START + 3 * PAGE,
      requestedEnd: END,
      interruption: { kind: 'aborted', reason: 'now' },
    });
    const second = new AbortController();
    const t2 = await setup({
      hook: (s: VmmStep) => {
        if (s.kind === 'aug' && s.gpa === START + PAGE) second.abort('now');
      },
    });
    expect(
      await acceptRange(t2.td.guest(0), range, guestPresets.strict.accept, undefined, undefined, {
        signal: second.signal,
      }),
    ).toEqual({
      kind: 'interrupted',
      tdcalls: 2,
      acceptedEnd: START + 2 * PAGE,
      inFlightEnd: START + 2 * PAGE,
      interruption: { kind: 'aborted', reason: 'now' },
    });
  });
});

describe('the KVM backend throws at each step of its zap (BLOCK → TRACK → kick → REMOVE)', () => {
  const leaves: Record<string, number> = {
    'TDH.MEM.RANGE.BLOCK': SeamcallLeaf.MEM_RANGE_BLOCK,
    'TDH.MEM.TRACK': SeamcallLeaf.MEM_TRACK,
    'TDH.MEM.PAGE.REMOVE': SeamcallLeaf.MEM_PAGE_REMOVE,
  };
  it.each(['TDH.MEM.RANGE.BLOCK', 'TDH.MEM.TRACK', 'kick', 'TDH.MEM.PAGE.REMOVE'])(
    'throws at %s of the 2nd page: the conversion rejects, its pages are quarantined, nothing over-claimed',
    async (step) => {
      const composed = await composeTd({
        vmm: kvmVmm({ hugePages: false }),
        build: { gpaw: 48, vcpus: 2 },
        sim: { module: { tdmr: { base: 2 ** 36, size: 2 ** 34 } } },
      });
      const { module, td } = composed;
      const guest = await TdGuest.boot([td.guest(0), td.guest(1)], { memoryBytes: 16 * MIB });
      expect(await guest.setPrivate(START, PAGES * PAGE)).toMatchObject({ kind: 'ok' });
      let seen = 0;
      const fail = (): void => {
        if (++seen === 2) throw new Error(`backend failure at ${step}`);
      };
      if (step === 'kick') {
        // KVM kicks the vCPUs in guest mode (kvm_make_all_cpus_request): vCPU 1, idle in the TD, while vCPU 0 is
        // out of it handling its own MapGPA.
        const kick = module.kickVcpu.bind(module);
        module.kickVcpu = (tdvpr) => {
          if (tdvpr === td.tdvprs[1]) fail();
          return kick(tdvpr);
        };
      } else {
        const seamcall = module.seamcall.bind(module);
        module.seamcall = (rax, regs) => {
          if (Number(rax & 0xffffn) === leaves[step]) fail();
          return seamcall(rax, regs);
        };
      }
      await expect(guest.setShared(START, PAGES * PAGE, { vcpu: 0 })).rejects.toSatisfy(lost);
      expect(states(guest)).toEqual(Array(PAGES).fill('quarantined'));
      expect(guest.check(module, td.tdr)).toEqual([]);
      // The first page was removed; the second one is blocked or removed, unless the BLOCK itself failed (then it
      // is still MAPPED: the guest, which cannot know, quarantines it all the same).
      expect(module.privatePage(td.tdr, START).state).not.toBe('MAPPED');
      const second = module.privatePage(td.tdr, START + PAGE).state;
      if (step === 'TDH.MEM.RANGE.BLOCK') expect(second).toBe('MAPPED');
      else expect(second).not.toBe('MAPPED');
      assertInvariants(module);
    },
  );
});
