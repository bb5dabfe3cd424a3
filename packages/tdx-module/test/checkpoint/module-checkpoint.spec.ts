import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  assertInvariants,
  type BuildTdOptions,
  type BuiltTd,
  buildTd,
  checkpointTd,
  encodeLeaf,
  ensureSeptTables,
  MemoryTraceSink,
  makeGprs,
  Reg,
  SteppingScheduler,
  snapshotState,
  type TdCheckpoint,
  TdcallLeaf,
  type TdExitEvent,
  TdxModule,
  TdxSimError,
  TdxStatus,
  VirtualClock,
  VmExitReason,
} from '../../src/index.js';
import { deepDifference } from '../deep-difference.js';
import { accept, LazyAugVmm, manualTd, must, parkFlow, TEST_TDMR } from '../harness.js';

const MIB2 = 2 ** 21;

/** A TDG.VP.VMCALL exit. */
const vmcallExit = (exit: TdExitEvent): boolean =>
  ((exit.regs[Reg.RAX] as bigint) & 0xffffn) === BigInt(VmExitReason.TDCALL);

/** One thing a workload does to a running TD: a guest ACCEPT, a guest write, or a host zap of a 4K page. */
type Action =
  | { readonly kind: 'accept'; readonly vcpu: number; readonly page: number; readonly level: 0 | 1 }
  | { readonly kind: 'write'; readonly vcpu: number; readonly page: number; readonly byte: number }
  | { readonly kind: 'zap'; readonly page: number };

/** Pages of the workloads: the first 8 4K pages of four 2M regions (so ACCEPTs at 2M and 4K collide). */
const pageGpa = (page: number): number => Math.floor(page / 8) * MIB2 + (page % 8) * 4096;

/** Runs `actions` on a TD (its vCPUs run by a lazy-AUG VMM); returns what each action answered. */
async function drive(
  module: TdxModule,
  td: BuiltTd,
  actions: readonly Action[],
  run = true,
): Promise<string[]> {
  if (run) for (const thread of td.run(new LazyAugVmm(module, td))) thread.catch(() => undefined);
  const answers: string[] = [];
  // Pages a zap left BLOCKED (REMOVE refused: the vCPUs were not kicked out since TRACK). This VMM never unblocks
  // them, so a guest touching one would fault on it forever: such an action is skipped, the same way on every TD.
  const blocked = new Set<number>();
  for (const action of actions) {
    const gpa = pageGpa(action.page);
    const touches4k = action.kind === 'write' || (action.kind === 'accept' && action.level === 0);
    if (touches4k && blocked.has(gpa)) {
      answers.push(`${action.kind} skipped: blocked`);
    } else if (action.kind === 'accept') {
      const base = action.level === 1 ? gpa - (gpa % MIB2) : gpa;
      answers.push(`accept ${(await accept(td, base, action.level, action.vcpu)).toString(16)}`);
    } else if (action.kind === 'write') {
      const result = await td.guest(action.vcpu).write(gpa, new Uint8Array([action.byte, 1, 2, 3]));
      answers.push(`write ${result.kind}`);
    } else {
      const block = await td.host.rangeBlock(td.tdr, gpa, 0);
      const track = block.status === TdxStatus.SUCCESS ? await td.host.track(td.tdr) : block;
      const remove = track.status === TdxStatus.SUCCESS ? await td.host.pageRemove(td.tdr, gpa, 0) : track;
      if (block.status === TdxStatus.SUCCESS && remove.status !== TdxStatus.SUCCESS) blocked.add(gpa);
      answers.push(`zap ${block.status.toString(16)} ${remove.status.toString(16)}`);
    }
  }
  return answers;
}

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({
    kind: fc.constant('accept' as const),
    vcpu: fc.integer({ min: 0, max: 2 }),
    page: fc.integer({ min: 0, max: 31 }),
    level: fc.constantFrom(0 as const, 1 as const),
  }),
  fc.record({
    kind: fc.constant('write' as const),
    vcpu: fc.integer({ min: 0, max: 2 }),
    page: fc.integer({ min: 0, max: 31 }),
    byte: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant('zap' as const), page: fc.integer({ min: 0, max: 31 }) }),
);

const BUILD: BuildTdOptions = { vcpus: 3, gpaw: 48 };

/** A module built fresh with a trace from its start; `events` skips what the build recorded. */
async function freshTd(build: BuildTdOptions = BUILD) {
  const trace = new MemoryTraceSink();
  const module = new TdxModule({ tdmr: TEST_TDMR }, { trace });
  const td = await buildTd(module, build);
  const built = trace.events.length;
  return { module, td, events: () => trace.events.slice(built) };
}

/** The checkpoint of a TD built once, and a restore with a trace of its own. */
async function checkpointed(build: BuildTdOptions = BUILD): Promise<TdCheckpoint> {
  const module = new TdxModule({ tdmr: TEST_TDMR });
  return checkpointTd(module, await buildTd(module, build));
}

function restoreTraced(checkpoint: TdCheckpoint) {
  const trace = new MemoryTraceSink();
  const { module, td } = checkpoint.restore({ trace });
  return { module, td, events: () => trace.events };
}

/** The vectors pending in the vIRR of vCPU `tdvpr`, and checks the vIRR's count. */
function pending(module: TdxModule, tdvpr: number): number[] {
  const vcpu = module.state.vcpusByTdvpr.get(tdvpr)?.vcpu;
  if (vcpu === undefined) throw new Error(`no vCPU 0x${tdvpr.toString(16)}`);
  const vectors = [...vcpu.virr.keys()].filter((vector) => vcpu.virr[vector] === 1);
  expect(vcpu.virrCount).toBe(vectors.length);
  return vectors;
}

/** The finalised MRTD of a built TD, in hex. */
function mrtdOf({ module, td }: { module: TdxModule; td: BuiltTd }): string | undefined {
  return module.state.tds.get(td.tdr)?.mrtd?.toString('hex');
}

describe('module checkpoints', () => {
  it('a restored TD is indistinguishable from a fresh build: same state digest, addresses and allocator', async () => {
    const fresh = await freshTd();
    const checkpoint = await checkpointed();
    const restored = checkpoint.restore();
    expect(snapshotState(restored.module)).toBe(snapshotState(fresh.module));
    expect(restored.module.clock.now()).toBe(fresh.module.clock.now());
    expect(restored.td.tdr).toBe(fresh.td.tdr);
    expect(restored.td.tdvprs).toEqual(fresh.td.tdvprs);
    expect(restored.td.allocator.allocatedBytes).toBe(fresh.td.allocator.allocatedBytes);
    expect(restored.td.allocator.alloc4k()).toBe(fresh.td.allocator.alloc4k());
    expect(restored.td.allocator.alloc2m()).toBe(fresh.td.allocator.alloc2m());
    // Each restore has an allocator of its own: what one handed out, the next still has.
    const next = checkpoint.restore().td.allocator;
    expect(next.allocatedBytes).toBe(fresh.td.allocator.allocatedBytes - 4096 - 2 ** 21);
    expect(next.alloc4k()).toBe(restored.td.allocator.alloc4k() - 4096);
    assertInvariants(restored.module);
  });

  test.prop([fc.array(action, { minLength: 1, maxLength: 12 })], { numRuns: 25 })(
    'the same workload on a fresh build and on a restored TD: same answers, same trace, same final state',
    async (actions) => {
      const checkpoint = await checkpointed();
      const fresh = await freshTd();
      const restored = restoreTraced(checkpoint);
      const freshAnswers = await drive(fresh.module, fresh.td, actions);
      const restoredAnswers = await drive(restored.module, restored.td, actions);
      expect(restoredAnswers).toEqual(freshAnswers);
      expect(deepDifference(restored.events(), fresh.events())).toBeUndefined();
      expect(snapshotState(restored.module)).toBe(snapshotState(fresh.module));
      assertInvariants(restored.module, { locks: false });
    },
  );

  test.prop([fc.array(action, { minLength: 1, maxLength: 8 })], { numRuns: 15 })(
    'no aliasing: what runs on one restore, or on the module checkpointed, never changes the checkpoint',
    async (actions) => {
      const module = new TdxModule({ tdmr: TEST_TDMR });
      const td = await buildTd(module, BUILD);
      const checkpoint = checkpointTd(module, td);
      const pristine = snapshotState(checkpoint.restore().module);
      const digest = mrtdOf({ module, td });
      expect(pristine).toBe(snapshotState(module));
      // Mutate the source, then a restore, then a second restore made before the first ran.
      await drive(module, td, actions);
      const first = checkpoint.restore();
      const second = checkpoint.restore();
      await drive(first.module, first.td, actions);
      expect(snapshotState(second.module)).toBe(pristine);
      expect(second.td.allocator.allocatedBytes).toBe(checkpoint.restore().td.allocator.allocatedBytes);
      expect(snapshotState(checkpoint.restore().module)).toBe(pristine);
      // The restores share the finalised MRTD's bytes (no copy): every restore and the source still read the digest
      // taken before any action ran, so nothing wrote it in place.
      expect(mrtdOf(checkpoint.restore())).toBe(digest);
      expect(mrtdOf(first)).toBe(digest);
      expect(mrtdOf({ module, td })).toBe(digest);
      // The first restore ended where the source did: the same actions from the same state.
      expect(snapshotState(first.module)).toBe(snapshotState(module));
    },
  );

  test.prop([fc.array(action, { minLength: 1, maxLength: 10 })], { numRuns: 8 })(
    'a TD that ran and whose host threads stopped is copied field for field (S-EPT, vCPUs, PAMT, memory)',
    async (actions) => {
      const { module, td } = await freshTd();
      const vmm = new LazyAugVmm(module, td);
      // Every host thread ends at the guest's first TDG.VP.VMCALL.
      const stopping = {
        onTdExit: async (exit: TdExitEvent) => (vmcallExit(exit) ? undefined : vmm.onTdExit(exit)),
      };
      const threads = td.run(stopping);
      await drive(module, td, actions, false);
      for (const vcpu of [0, 1, 2])
        await td
          .guest(vcpu)
          .tdcall(encodeLeaf(TdcallLeaf.VP_VMCALL), makeGprs({ rcx: 0xfc00n }))
          .catch(() => undefined);
      await Promise.all(threads);
      const copy = module.checkpoint().restore();
      expect(snapshotState(copy)).toBe(snapshotState(module));
      expect(deepDifference(copy.state.tds, module.state.tds)).toBeUndefined();
      expect(deepDifference(copy.state.vcpusByTdvpr, module.state.vcpusByTdvpr)).toBeUndefined();
      expect(
        deepDifference([...copy.state.memory.pages()], [...module.state.memory.pages()]),
      ).toBeUndefined();
      expect(
        deepDifference([...copy.state.pamt.usedEntries()], [...module.state.pamt.usedEntries()]),
      ).toBeUndefined();
      expect(deepDifference(copy.state.hkidsInUse, module.state.hkidsInUse)).toBeUndefined();
      assertInvariants(copy);
    },
  );

  test.prop(
    [
      fc.array(fc.record({ page: fc.integer({ min: 0, max: 63 }), block: fc.boolean() }), { maxLength: 10 }),
      fc.array(fc.record({ page: fc.integer({ min: 0, max: 63 }), block: fc.boolean() }), { maxLength: 10 }),
    ],
    { numRuns: 20 },
  )(
    "a checkpoint of a restore that changed (PAMT blocks and S-EPT tables partly in the restore's one buffer, partly made since) copies it exactly, and neither changes the other",
    async (first, second) => {
      // Host SEAMCALLs only (no vCPU runs): S-EPT tables added, 4K pages AUGed in two 2M regions and some blocked.
      const hostOps = async (module: TdxModule, td: BuiltTd, ops: typeof first) => {
        for (const { page, block } of ops) {
          const gpa = pageGpa(page);
          await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
          await td.host.pageAug(td.tdr, gpa, 0, td.allocator.alloc4k());
          if (block) await td.host.rangeBlock(td.tdr, gpa, 0);
        }
      };
      const base = await checkpointed();
      const pristine = snapshotState(base.restore().module);
      const one = base.restore();
      await hostOps(one.module, one.td, first);
      const after = snapshotState(one.module);
      const again = checkpointTd(one.module, one.td);
      const two = again.restore();
      expect(snapshotState(two.module)).toBe(after);
      assertInvariants(two.module);
      // The same SEAMCALLs on both from there: the same state, and neither checkpoint moved.
      await hostOps(one.module, one.td, second);
      await hostOps(two.module, two.td, second);
      expect(snapshotState(two.module)).toBe(snapshotState(one.module));
      expect(snapshotState(again.restore().module)).toBe(after);
      expect(snapshotState(base.restore().module)).toBe(pristine);
    },
  );

  it('a measurement in progress is captured: MR.FINALIZE after a restore gives the fresh build MRTD', async () => {
    const image = [{ gpa: 0x10_000, bytes: new Uint8Array(4096).fill(0xa5) }];
    const build: BuildTdOptions = { initialImage: image, skipFinalize: true };
    const fresh = await freshTd(build);
    const checkpoint = await checkpointed(build);
    const restored = checkpoint.restore();
    must('MR.FINALIZE', await fresh.td.host.mrFinalize(fresh.td.tdr));
    must('MR.FINALIZE', await restored.td.host.mrFinalize(restored.td.tdr));
    const mrtd = (module: TdxModule, tdr: number) => module.state.tds.get(tdr)?.mrtd?.toString('hex');
    expect(mrtd(restored.module, restored.td.tdr)).toHaveLength(96);
    expect(mrtd(restored.module, restored.td.tdr)).toBe(mrtd(fresh.module, fresh.td.tdr));
    expect(snapshotState(restored.module)).toBe(snapshotState(fresh.module));
    // The restored page reads back from the TD as it was added.
    const vmm = new LazyAugVmm(restored.module, restored.td);
    for (const thread of restored.td.run(vmm)) thread.catch(() => undefined);
    const read = await restored.td.guest(0).read(0x10_000, 2);
    expect(read.kind === 'ok' ? [...read.data] : read).toEqual([0xa5, 0xa5]);
    // A second restore is still unfinalised: the checkpoint kept its own copy of the measurement.
    const again = checkpoint.restore();
    expect(again.module.state.tds.get(again.td.tdr)?.mrtd).toBeUndefined();
  });

  it('the services of a restored module are its own: a clock given starts where it is, a default one at the checkpoint', async () => {
    const checkpoint = await checkpointed();
    const clock = new VirtualClock();
    const restored = checkpoint.restore({ clock });
    expect(restored.module.clock).toBe(clock);
    expect(clock.now()).toBe(0);
    expect(checkpoint.restore().module.clock.now()).toBe(checkpoint.module.time);
    expect(checkpoint.module.time).toBeGreaterThan(0);
    expect(() => checkpoint.restore({ clok: clock } as never)).toThrow(
      expect.objectContaining({ code: 'UNKNOWN_OPTION' }),
    );
  });

  it('refuses while a vCPU runs (in guest mode, its host thread in TDH.VP.ENTER), with a typed error and nothing copied', async () => {
    const { module, td } = await freshTd();
    await drive(module, td, [{ kind: 'accept', vcpu: 0, page: 0, level: 0 }]);
    const before = snapshotState(module);
    const error = (() => {
      try {
        module.checkpoint();
      } catch (e) {
        return e;
      }
    })();
    expect(TdxSimError.is(error)).toBe(true);
    expect(error).toMatchObject({ code: 'NOT_QUIESCENT', argument: 'module' });
    expect((error as Error).message).toMatch(/vCPU 0 .*in guest mode/);
    expect(snapshotState(module)).toBe(before);
    expect(() => checkpointTd(module, td)).toThrow(expect.objectContaining({ code: 'NOT_QUIESCENT' }));
  });

  it('refuses while a suspended flow holds a lock, and checkpoints once it finished', async () => {
    const scheduler = new SteppingScheduler();
    const td = await manualTd('initialized', { scheduler });
    const parked = await parkFlow(scheduler, 'TDH.MEM.SEPT.ADD', () =>
      td.host.septAdd(td.tdr, 0, 3, td.allocator.alloc4k()),
    );
    expect(() => td.module.checkpoint()).toThrow(
      expect.objectContaining({ code: 'NOT_QUIESCENT', message: expect.stringMatching(/locked|held/) }),
    );
    must('SEPT.ADD', await parked.finish());
    const restored = td.module.checkpoint().restore();
    expect(snapshotState(restored)).toBe(snapshotState(td.module));
  });

  it('refuses while work registered with holdWhile has not settled', async () => {
    const module = new TdxModule({ tdmr: TEST_TDMR });
    let settle: () => void = () => undefined;
    const held = module.holdWhile(
      new Promise<void>((resolve) => {
        settle = resolve;
      }),
    );
    expect(() => module.checkpoint()).toThrow(
      expect.objectContaining({ code: 'NOT_QUIESCENT', message: expect.stringMatching(/holdWhile/) }),
    );
    settle();
    await held;
    expect(() => module.checkpoint()).not.toThrow();
  });

  it("virtual interrupts pending at the checkpoint, or posted after, are each restore's own (the vIRR is copied)", async () => {
    const module = new TdxModule({ tdmr: TEST_TDMR });
    const td = await buildTd(module, BUILD);
    const [withIrr, withoutIrr] = td.tdvprs as [number, number];
    // Posted to stopped vCPUs: pending until a guest runs (a checkpoint may hold them).
    module.postInterrupt(withIrr, 40);
    const checkpoint = checkpointTd(module, td);
    const first = checkpoint.restore();
    const second = checkpoint.restore();
    first.module.postInterrupt(withIrr, 41);
    first.module.postInterrupt(withoutIrr, 42);
    expect(pending(first.module, withIrr)).toEqual([40, 41]);
    expect(pending(first.module, withoutIrr)).toEqual([42]);
    for (const other of [second.module, checkpoint.restore().module, module]) {
      expect(pending(other, withIrr)).toEqual([40]);
      expect(pending(other, withoutIrr)).toEqual([]);
    }
    module.postInterrupt(withoutIrr, 43);
    expect(pending(checkpoint.restore().module, withoutIrr)).toEqual([]);
  });

  it('a second TD built after a restore is the one a fresh module builds (HKIDs and allocator copied)', async () => {
    const module = new TdxModule({ tdmr: TEST_TDMR });
    const td = await buildTd(module, { vcpus: 2 });
    const checkpoint = checkpointTd(module, td);
    const restored = checkpoint.restore();
    const second = await buildTd(restored.module, { vcpus: 1 }, restored.td.allocator);
    const fresh = new TdxModule({ tdmr: TEST_TDMR });
    const freshTd = await buildTd(fresh, { vcpus: 2 });
    const freshSecond = await buildTd(fresh, { vcpus: 1 }, freshTd.allocator);
    expect(second.tdr).toBe(freshSecond.tdr);
    expect(snapshotState(restored.module)).toBe(snapshotState(fresh));
    assertInvariants(restored.module);
  });
});
