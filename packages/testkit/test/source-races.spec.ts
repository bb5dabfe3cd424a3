import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import { KvmVmm } from '@tdxsim/host-kvm';
import {
  buildTd,
  ensureSeptTables,
  makeGprs,
  Reg,
  sharedBit,
  TdxModule,
  TdxStatus,
  type TraceEvent,
  type Vmm,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { exploreSchedules } from '../src/index.js';

// The races of the project's seed threads (shared/reference/seeds/), found by exploring schedules through the public
// API: nothing is parked by hand, the schedulers choose every interleaving, and the properties hold in all of them.

const TDMR = { base: 2 ** 34, size: 2 ** 30 } as const;
const PAGE = 0x1000;
const BUSY_RCX = 0x8000020000000001n;
const BUSY_SEPT_TREE = 0x8000020000000092n;
const ALREADY_ACCEPTED = 0xb0a00000000n;
const EPT_VIOLATION = 0x30n;

const seamcalls = (trace: readonly TraceEvent[], leaf: string) =>
  trace.flatMap((e, index) =>
    e.kind === 'seamcall' && e.leaf === leaf ? [{ index, status: e.status }] : [],
  );

describe('guest ACCEPT holding an entry lock while KVM zaps the page (seed 000: "kick all vCPUs ... the one and only retry")', () => {
  it('BLOCK meets the held entry: BUSY and HOST_PRIORITY; the guest retries into BUSY; KVM kicks and its one retry succeeds', async () => {
    const P = 0x10_0000;
    const chains: string[] = [];
    const result = await exploreSchedules({
      scheduler: 'random',
      schedules: 150,
      seed: 1,
      scenario: async (ctx) => {
        const module = new TdxModule({ tdmr: TDMR }, ctx.services);
        const kvm = await KvmVmm.create(module, {}, { gpaw: 48, vcpus: 2 });
        for (const thread of kvm.run()) thread.catch(() => {});
        const cpu0 = kvm.td.guest(0);
        expect(await tdgAccept(cpu0, P, 0)).toBe(TdxStatus.SUCCESS);
        const accepts: bigint[] = [];
        const [, mapped] = await Promise.all([
          // vCPU 0 accepts P again and again (a guest re-validating its page), holding its entry lock each time.
          (async () => {
            for (let i = 0; i < 3; i++) accepts.push(await tdgAccept(cpu0, P, 0));
          })(),
          // vCPU 1 makes P shared: KVM zaps it (BLOCK → TRACK → kick → REMOVE).
          vmcallMapGpa(kvm.td.guest(1), BigInt(sharedBit(48) + P), BigInt(PAGE)),
        ]);
        return { module, tdr: kvm.td.tdr, kvm, accepts, mapped: mapped.r10 };
      },
      property: ({ td, trace }) => {
        const blocks = seamcalls(trace, 'TDH.MEM.RANGE.BLOCK');
        const first = blocks[0];
        if (td.kvm.dead !== undefined) return `KVM died: ${td.kvm.dead}`;
        if (td.mapped !== 0n) return `MapGPA answered R10 = ${td.mapped}`;
        // The guest never sees BUSY_HOST_PRIORITY: it gets BUSY (reference §10.5).
        for (const status of td.accepts)
          if (![TdxStatus.SUCCESS, ALREADY_ACCEPTED, BUSY_RCX].includes(status))
            return `the guest saw 0x${status.toString(16)}`;
        if (first === undefined || first.status === TdxStatus.SUCCESS) return blocks.length === 1;
        // BUSY: exactly one retry, after the kick, and it succeeds.
        if (first.status !== BUSY_RCX) return `BLOCK answered 0x${first.status.toString(16)}`;
        const retry = blocks[1];
        if (blocks.length !== 2 || retry?.status !== TdxStatus.SUCCESS)
          return 'the single retry did not succeed';
        const between = trace.slice(first.index + 1, retry.index);
        const guestBusy = between.some((e) => e.kind === 'tdcall' && e.vcpu === 0 && e.status === BUSY_RCX);
        const kicked = between.some((e) => e.kind === 'td-exit' && e.vcpu === 0 && e.reason.includes('kick'));
        chains.push(`${guestBusy ? 'guest BUSY' : 'no guest retry'}, ${kicked ? 'kicked' : 'already out'}`);
        return true;
      },
    });
    expect(result.failure).toBeUndefined();
    expect(result.distinctInterleavings).toBeGreaterThan(100);
    // The whole chain of the seed thread was seen: host BUSY (HP set), the guest's retry BUSY while HP stood, the
    // kick, and the single successful retry.
    expect(chains).toContain('guest BUSY, kicked');
  });
});

describe('zero-step mitigation (seed 000: "after a pre-determined number of EPT violations on the same instruction")', () => {
  it('after six faults at one instruction the GPA is listed: TDH.VP.ENTER contends for the SEPT tree (BUSY) until it translates', async () => {
    const X = 0x10_0000;
    const found: string[] = [];
    const result = await exploreSchedules({
      scheduler: 'pct',
      schedules: 200,
      seed: 1,
      scenario: async (ctx) => {
        const module = new TdxModule({ tdmr: TDMR }, ctx.services);
        const td = await buildTd(module, { vcpus: 1 });
        // A VMM that lets the guest retry: it resumes it after every exit (a blocked page is the host's own business),
        // and waits a turn after a failed entry.
        const vmm: Vmm = {
          async onTdExit(exit) {
            if ((exit.regs[Reg.RAX] as bigint) >> 63n === 1n)
              await (module.yieldAt({ flow: 'test.vmm', step: 'entry-failed', tdr: td.tdr }) ??
                new Promise<void>((resolve) => setImmediate(resolve)));
            return makeGprs();
          },
        };
        for (const thread of td.run(vmm)) thread.catch(() => {});
        expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, X, 0, td.pwl)).toBe(
          TdxStatus.SUCCESS,
        );
        expect((await td.host.pageAug(td.tdr, X, 0, td.allocator.alloc4k())).status).toBe(TdxStatus.SUCCESS);
        expect(await tdgAccept(td.guest(0), X, 0)).toBe(TdxStatus.SUCCESS);
        const [reads] = await Promise.all([
          // The guest reads X four times; a read of a blocked X faults and is re-executed at the same instruction.
          (async () => {
            const kinds: string[] = [];
            for (let i = 0; i < 4; i++) kinds.push((await td.guest(0).read(X, 4)).kind);
            return kinds;
          })(),
          // A host thread blocks X, tracks, kicks the vCPU out and unblocks X again.
          ctx.spawn('zapper', async () => {
            const statuses = [
              (await td.host.rangeBlock(td.tdr, X, 0)).status,
              (await td.host.track(td.tdr)).status,
            ];
            await module.kickVcpu(td.tdvprs[0] as number);
            // A step of its own between the kick and the UNBLOCK (no lock held).
            await module.yieldAt({ flow: 'zapper', step: 'kicked', tdr: td.tdr, gpa: X });
            statuses.push((await td.host.rangeUnblock(td.tdr, X, 0)).status);
            return statuses;
          }),
        ]);
        return { module, tdr: td.tdr, reads };
      },
      property: ({ td, trace }) => {
        if (td.reads.some((kind) => kind !== 'ok')) return `a read ended ${td.reads.join(',')}`;
        const enters = seamcalls(trace, 'TDH.VP.ENTER');
        const busy = enters.find((e) => e.status === BUSY_SEPT_TREE);
        if (busy === undefined) return true;
        // Before the first BUSY entry: at least 7 real EPT-violation exits at the same instruction (the 7th and later
        // list the GPA once the counter reached 6: reference tdx-module.md §11).
        const faults = trace
          .slice(0, busy.index)
          .filter((e) => e.kind === 'td-exit' && e.reason === 'EPT violation');
        if (faults.length < 7) return `TDH.VP.ENTER was BUSY after only ${faults.length} faults`;
        // An entry the module refused with a synthesised EPT violation (X listed, not translating): RAX 0x30 with no TD
        // exit recorded since the previous entry.
        const synthesised = enters.some(
          (e, i) =>
            e.status === EPT_VIOLATION &&
            !trace.slice((enters[i - 1]?.index ?? 0) + 1, e.index).some((x) => x.kind === 'td-exit'),
        );
        found.push(`busy after ${faults.length} faults${synthesised ? ', synthesised exit' : ''}`);
        return true;
      },
    });
    expect(result.failure).toBeUndefined();
    expect(found.length).toBeGreaterThan(0);
    expect(found.some((line) => line.includes('synthesised exit'))).toBe(true);
  });
});

describe('PAGE.ADD contending at build (seed 001: "if the userspace breaks (5) ... simply return -EBUSY")', () => {
  it('KVM_TDX_INIT_MEM_REGION beside a SEAMCALL that holds the TD: -EBUSY at the page that failed, resuming from there completes it', async () => {
    const outcomes = new Set<string>();
    const result = await exploreSchedules({
      scheduler: 'random',
      schedules: 100,
      seed: 1,
      scenario: async (ctx) => {
        const module = new TdxModule({ tdmr: TDMR }, ctx.services);
        const kvm = await KvmVmm.create(module, {}, { gpaw: 48, vcpus: 1, skipFinalize: true });
        const image = (byte: number) => new Uint8Array(2 * PAGE).fill(byte);
        // KVM serialises its own KVM_TDX_INIT_MEM_REGION ioctls with slots_lock (tdx_vcpu_init_mem_region), so
        // PAGE.ADD contends only with a SEAMCALL outside it: the misbehaving userspace of the seed thread, whose
        // ioctls on other vCPUs hold the TD. A direct TDH.MEM.PAGE.ADD of another page stands in for that here,
        // once KVM has linked the tables of the region.
        const first = await kvm.initMemRegion(0x10_0000, image(0xa).subarray(0, PAGE));
        if (first.kind !== 'ok') throw new Error('set-up: the first page was not added');
        const populate = (actor: string, gpa: number, byte: number) =>
          ctx.spawn(actor, async () => {
            const errors: string[] = [];
            for (let at = gpa, tries = 0; tries < 1000; tries++) {
              const r = await kvm.initMemRegion(at, image(byte).subarray(at - gpa));
              if (r.kind === 'ok') return errors;
              errors.push(`${r.errno}@0x${r.next.toString(16)}`);
              if (r.errno !== 'EBUSY') return errors;
              at = r.next;
              // -EBUSY: try again a little later (the other thread holds the TD).
              await module.yieldAt({ flow: 'userspace', step: 'ebusy', tdr: kvm.td.tdr, gpa: at });
            }
            return [...errors, 'gave up'];
          });
        const other = ctx.spawn('userspace-b', async () => {
          const { td } = kvm;
          for (let tries = 0; tries < 1000; tries++) {
            const added = await td.host.pageAdd(
              td.tdr,
              0x10_8000,
              td.allocator.alloc4k(),
              td.allocator.alloc4k(),
            );
            if (added.status === TdxStatus.SUCCESS) return [];
            await module.yieldAt({ flow: 'userspace', step: 'busy', tdr: td.tdr, gpa: 0x10_8000 });
          }
          return ['gave up'];
        });
        const [a, b] = await Promise.all([populate('userspace-a', 0x10_1000, 0xa), other]);
        const finalized = await kvm.finalize();
        return { module, tdr: kvm.td.tdr, kvm, errors: [...a, ...b], finalized };
      },
      property: ({ td }) => {
        for (const error of td.errors) outcomes.add(error.replace(/@.*/, ''));
        if (td.errors.some((e) => !e.startsWith('EBUSY@'))) return `not only -EBUSY: ${td.errors.join(', ')}`;
        if (td.finalized !== 'ok') return `finalize: ${td.finalized}`;
        // Every page was added: MAPPED, and the build went on to RUNNABLE.
        for (const gpa of [0x10_0000, 0x10_1000, 0x10_2000, 0x10_8000])
          if (td.module.privatePage(td.tdr, gpa).state !== 'MAPPED') return `0x${gpa.toString(16)} not added`;
        return true;
      },
    });
    expect(result.failure).toBeUndefined();
    expect(outcomes).toContain('EBUSY');
  });
});
