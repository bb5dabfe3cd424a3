import { TdGuest, tdgAccept } from '@tdxsim/guest';
import { type KvmVmm, type KvmVmmOptions, MirrorEntry } from '@tdxsim/host-kvm';
import {
  encodeLeaf,
  type GuestCpu,
  makeGprs,
  sharedBit,
  TdcallLeaf,
  type VmmFactory,
} from '@tdxsim/tdx-module';
import {
  type ExploredTd,
  type ExploreProperty,
  type ExploreScenario,
  exploredHostedTd,
  kvmVmmFactory,
} from '../../src/index.js';

// The race scenarios of the KVM concurrency issue (host-kvm), run by the explorer: each builds a TD with two vCPUs
// and one guest per vCPU on the KVM backend, runs a short set-up, then the racing operations. R is a 2M region whose
// pages guest 0 accepts in the set-up (the whole of R — one 2M leaf — with huge pages); R2 is a 2M region nothing has
// touched, whose page table is missing, so faults there race to link it.
//
// Each guest's ledger is checked on the pages it owns (the guests are two TdGuests of one TD: what one converts, the
// other's ledger does not know), by the property; the explorer checks the module's invariants and the backend's view.

const PAGE = 4096;
const MIB2 = 2 ** 21;
const R = MIB2;
const R2 = 2 * MIB2;
const RAM = 3 * MIB2;
const TDMR = { base: 2 ** 36, size: 2 ** 30 } as const;

/** What a KVM race hands back: the TD (with the backend as `vmm`) and what to hold against the truth. */
export interface KvmRaceTd extends ExploredTd {
  readonly kvm: KvmVmm;
  readonly owned: readonly {
    readonly guest: TdGuest;
    readonly ranges: readonly (readonly [number, number])[];
  }[];
  readonly extra?: () => string[];
}

interface Env {
  readonly kvm: KvmVmm;
  readonly guests: readonly [TdGuest, TdGuest];
}

interface KvmRace {
  readonly name: string;
  setup(env: Env): Promise<void>;
  /** The racing operations; resolves with the ranges each guest owns, and extra checks. */
  race(
    env: Env,
  ): Promise<{ ledger: readonly (readonly (readonly [number, number])[])[]; extra?: () => string[] }>;
}

/** Fails the run when an operation did not end as it must. */
function must(what: string, result: { kind: string }): void {
  if (result.kind !== 'ok')
    throw new Error(
      `${what} ended ${JSON.stringify(result, (_key, value) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value))}`,
    );
}

/**
 * Guest 0 accepts what the race will convert: with huge pages the whole of R (a 2M ACCEPT: one 2M leaf), else only
 * `window` of it at 4K (the pages the race touches and their neighbours).
 */
function acceptR(window: readonly [number, number]): KvmRace['setup'] {
  return async (env) => {
    const [start, end] = env.kvm.options.hugePages ? [R, R + MIB2] : window;
    must('set-up: accept in R', await env.guests[0].setPrivate(start, end - start));
  };
}

export const kvmRaces: readonly KvmRace[] = [
  {
    name: 'two vCPUs converting pages of one 2M region',
    setup: acceptR([R, R + 0x1_0000]),
    async race({ guests: [g0, g1] }) {
      const a = R + 0x3000;
      const b = R + 0x10_0000;
      await Promise.all([
        (async () => {
          must('vCPU 0 to shared', await g0.setShared(a, 2 * PAGE));
          must('vCPU 0 back', await g0.setPrivate(a, 2 * PAGE));
        })(),
        (async () => {
          must('vCPU 1 to shared', await g1.setShared(b, 2 * PAGE));
          must('vCPU 1 back', await g1.setPrivate(b, 2 * PAGE));
        })(),
      ]);
      return {
        ledger: [
          [
            [R, b],
            [b + 2 * PAGE, R + MIB2],
          ],
          [[b, b + 2 * PAGE]],
        ],
      };
    },
  },
  {
    name: 'faults racing a zap',
    setup: acceptR([R + 0x7_0000, R + 0xa_0000]),
    async race({ guests: [g0, g1] }) {
      await Promise.all([
        (async () => {
          // Lazy accepts: each first touch is an EPT-violation exit that AUGs (and links R2's page table).
          for (const gpa of [R2 + 0x1000, R2 + 0x2000, R2 + 0x1_0000])
            must('vCPU 1 touch', await g1.read(gpa, 8));
        })(),
        (async () => must('vCPU 0 zap', await g0.setShared(R + 0x8_0000, 4 * PAGE)))(),
      ]);
      return { ledger: [[[R, R + MIB2]], [[R2, R2 + MIB2]]] };
    },
  },
  {
    name: 'two zaps at once',
    async setup(env) {
      await acceptR([R, R + 0x1_0000])(env);
      must('set-up: guest 1 accepts in R2', await env.guests[1].setPrivate(R2 + 0x4000, 4 * PAGE));
    },
    async race({ guests: [g0, g1] }) {
      await Promise.all([
        (async () => must('vCPU 0 zap', await g0.setShared(R + 0x2000, 3 * PAGE)))(),
        (async () => must('vCPU 1 zap', await g1.setShared(R2 + 0x4000, 4 * PAGE)))(),
      ]);
      return { ledger: [[[R, R + MIB2]], [[R2, R2 + MIB2]]] };
    },
  },
  {
    name: 'an accept racing a zap',
    setup: async () => undefined,
    async race({ kvm, guests: [, g1] }) {
      // vCPU 0 accepts X (2M first, as a strict guest does, then 4K) while vCPU 1 converts X to shared: the accept may
      // hold X's S-EPT entry when KVM blocks it (BUSY, kick, one retry), or fault after the attribute change
      // (KVM_EXIT_MEMORY_FAULT: userspace makes X private again). Either way KVM's attributes, its mirror and the
      // module must agree at the end; X itself is the guest racing itself, so no ledger vouches for it.
      const x = R;
      const cpu0 = kvm.td.guest(0);
      await Promise.all([
        (async () => {
          const huge = await tdgAccept(cpu0, x, 1);
          if (huge !== 0n) await tdgAccept(cpu0, x, 0);
        })(),
        (async () => must('vCPU 1 to shared', await g1.setShared(x, PAGE)))(),
      ]);
      return {
        ledger: [[], []],
        extra: () => {
          const shared = kvm.attributes.get(x) === 'shared';
          const leaf = kvm.mirror.walk(x, 0);
          const mapped = leaf.entry === MirrorEntry.PRESENT || leaf.entry === MirrorEntry.BLOCKED;
          return shared && mapped ? ['X is shared in the attributes but KVM still maps it private'] : [];
        },
      };
    },
  },
  {
    name: 'concurrent lazy accepts with a conversion',
    setup: acceptR([R + 0x1f_0000, R + MIB2]),
    async race({ guests: [g0, g1] }) {
      await Promise.all([
        (async () => {
          must('vCPU 0 touch', await g0.write(R2 + 0x5000, new Uint8Array([1])));
          must('vCPU 0 convert', await g0.setShared(R + 0x1f_f000, PAGE));
        })(),
        (async () => {
          must('vCPU 1 touch', await g1.write(R2 + 0x6000, new Uint8Array([2])));
          must('vCPU 1 touch', await g1.read(R2 + 0x7000, 1));
        })(),
      ]);
      return {
        ledger: [
          [
            [R, R + MIB2],
            [R2 + 0x5000, R2 + 0x6000],
          ],
          [[R2 + 0x6000, R2 + 0x8000]],
        ],
      };
    },
  },
  // Host-initiated operations (issue 18): userspace changes attributes, punches holes in guest_memfd and removes and
  // re-adds a memslot while the guest's vCPUs use the pages. Each vCPU's access must end (done, or a #VE for a page
  // faulted in anew); the pages the host changed behind a guest's back are left out of that guest's ledger check.
  {
    name: 'the host converts pages while both vCPUs access them',
    setup: acceptR([R, R + 0x1_0000]),
    async race({ kvm }) {
      await Promise.all([
        (async () => {
          await kvm.setMemoryAttributes(R + 0x3000, 2 * PAGE, 'shared');
          await kvm.setMemoryAttributes(R + 0x3000, PAGE, 'private');
        })(),
        touch(kvm.td.guest(0), R + 0x3000),
        touch(kvm.td.guest(1), SHARED + R + 0x4000),
      ]);
      return {
        ledger: [
          [
            [R, R + 0x3000],
            [R + 0x5000, R + MIB2],
          ],
          [],
        ],
        extra: () => attributesHonoured(kvm, R + 0x3000, R + 0x5000),
      };
    },
  },
  {
    name: 'a hole punched in guest_memfd while both vCPUs access it',
    setup: acceptR([R, R + 0x1_0000]),
    async race({ kvm }) {
      await Promise.all([
        kvm.punchHole(R + 0x2000, 4 * PAGE),
        touch(kvm.td.guest(0), R + 0x3000, true),
        touch(kvm.td.guest(1), R + 0x4000),
      ]);
      return {
        ledger: [
          [
            [R, R + 0x2000],
            [R + 0x6000, R + MIB2],
          ],
          [],
        ],
        extra: () => attributesHonoured(kvm, R + 0x2000, R + 0x6000),
      };
    },
  },
  {
    name: 'a memslot removed and re-added while both vCPUs access it',
    async setup(env) {
      const { kvm } = env;
      // Slot 1: the 16 pages of R the race uses (a small slot keeps each zap short); carved out first.
      await kvm.removeMemslot(0);
      await kvm.addMemslot(0, 0, R);
      await kvm.addMemslot(1, R, SLOT_1);
      await kvm.addMemslot(2, R + SLOT_1, SHARED - R - SLOT_1);
      // At 4K even with huge pages: no 2M mapping crosses a memslot.
      must('set-up: accept in slot 1', await env.guests[0].setPrivate(R, SLOT_1));
      must('set-up: guest 1 shares a page of R', await env.guests[1].setShared(R + 0x8000, PAGE));
      must(
        'set-up: vCPU 1 writes it',
        await kvm.td.guest(1).write(SHARED + R + 0x8000, new Uint8Array([0x5a])),
      );
    },
    async race({ kvm }) {
      let seen: number | undefined;
      await Promise.all([
        (async () => {
          await kvm.removeMemslot(1);
          await kvm.addMemslot(1, R, SLOT_1);
        })(),
        touch(kvm.td.guest(0), R + 0x3000),
        (async () => {
          const result = await kvm.td.guest(1).read(SHARED + R + 0x8000, 1);
          if (result.kind === 'ok') seen = result.data[0];
        })(),
      ]);
      return {
        ledger: [[], [[R + 0x8000, R + 0x9000]]],
        extra: () => [
          ...attributesHonoured(kvm, R, R + SLOT_1),
          ...(seen === 0x5a
            ? []
            : [`the shared page read ${String(seen)} after the slot came back, not 0x5a`]),
        ],
      };
    },
  },
];

/** The memslot the memslot race removes and re-adds: the first 16 pages of R. */
const SLOT_1 = 0x1_0000;
/** The shared bit at GPAW 48. */
const SHARED = sharedBit(48);

/**
 * One guest access by a raw vCPU, as a kernel makes it: a #VE (a page faulted in anew, PENDING) is taken and its
 * information cleared with TDG.VP.VEINFO.GET. Throws if the access ends any other way than done or #VE.
 */
async function touch(cpu: GuestCpu, gpa: number, write = false): Promise<void> {
  const result = write ? await cpu.write(gpa, new Uint8Array([1])) : await cpu.read(gpa, 1);
  if (result.kind === 've') await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
  else if (result.kind !== 'ok') throw new Error(`access to 0x${gpa.toString(16)} ended ${result.kind}`);
}

/** KVM's mappings in [start, end) follow its attributes: no private leaf on a shared page, no shared mapping on a private one. */
function attributesHonoured(kvm: KvmVmm, start: number, end: number): string[] {
  const problems: string[] = [];
  const sharedMapped = new Set([...kvm.view().sharedMappings()].map((m) => m.gpa));
  for (let gpa = start; gpa < end; gpa += PAGE) {
    const shared = kvm.attributes.get(gpa) === 'shared';
    const leaf = kvm.mirror.walk(gpa, 0).entry;
    const privateMapped = leaf === MirrorEntry.PRESENT || leaf === MirrorEntry.BLOCKED;
    if (shared && privateMapped) problems.push(`0x${gpa.toString(16)} is shared but mapped private`);
    if (!shared && sharedMapped.has(gpa)) problems.push(`0x${gpa.toString(16)} is private but mapped shared`);
  }
  return problems;
}

/**
 * `race` on a KVM backend with `options`, as an explorer scenario. A VM death ends the run with its reason. The TD is
 * built once and restored per run (`setUp: 'restore'`, the default: `kvmVmmFactory` adopts it), or built per run
 * (`'build'`): both give every schedule the same run (explore-restore-equivalence.spec.ts).
 */
export function kvmScenario(
  race: KvmRace,
  options: KvmVmmOptions,
  setUp: 'restore' | 'build' = 'restore',
): ExploreScenario<KvmRaceTd> {
  const adopting = kvmVmmFactory(options);
  const factory: VmmFactory = setUp === 'restore' ? adopting : (module, build) => adopting(module, build);
  return async (ctx) => {
    const { module, hosted } = await exploredHostedTd(ctx, factory, { tdmr: TDMR }, { gpaw: 48, vcpus: 2 });
    const kvm = hosted.vmm as KvmVmm;
    // A host thread the backend stops (a dead VM) is seen by the guest as VCPU_NOT_RESUMED.
    for (const thread of kvm.run()) thread.catch(() => undefined);
    const td = ctx.watch({ module, tdr: kvm.td.tdr, vmm: kvm });
    const guests = [
      await TdGuest.boot(kvm.td.guest(0), { memoryBytes: RAM, policy: 'strict' }),
      await TdGuest.boot(kvm.td.guest(1), { memoryBytes: RAM, policy: 'strict' }),
    ] as const;
    const env = { kvm, guests };
    try {
      await race.setup(env);
      const checks = await race.race(env);
      return {
        ...td,
        kvm,
        owned: checks.ledger.map((ranges, index) => ({ guest: guests[index] as TdGuest, ranges })),
        ...(checks.extra === undefined ? {} : { extra: checks.extra }),
      };
    } catch (error) {
      if (kvm.dead !== undefined) throw new Error(`VM dead: ${kvm.dead}`);
      throw error;
    }
  };
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * What the explorer does not check by itself for a KVM race: the VM is alive, no mirror entry is left frozen, nobody
 * holds mmu_lock, each guest's ledger equals the truth on the pages it owns, and the race's own checks.
 */
export const kvmRaceProperty: ExploreProperty<KvmRaceTd> = ({ td }) => {
  const { kvm } = td;
  if (kvm.dead !== undefined) return `VM dead: ${kvm.dead}`;
  const problems: string[] = [];
  if (kvm.mirror.frozen().length > 0)
    problems.push(`mirror entries still frozen: ${kvm.mirror.frozen().length}`);
  if (kvm.mmuLock.readers > 0 || kvm.mmuLock.writer) problems.push('mmu_lock still held at quiescence');
  td.owned.forEach(({ guest, ranges }, index) => {
    for (const m of guest.check(td.module, td.tdr)) {
      if (ranges.some(([start, end]) => m.start < end && m.end > start))
        problems.push(
          `guest ${index} ledger: ${hex(m.start)}..${hex(m.end)} is ${m.ledger}, the module holds ${m.module}`,
        );
    }
  });
  problems.push(...(td.extra?.() ?? []));
  return problems.length === 0 ? true : problems.join('; ');
};
