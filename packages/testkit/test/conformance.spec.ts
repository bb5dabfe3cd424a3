/**
 * The conformance kit: the real backends pass every rule, a backend written here (like MyVmm in the README) passes,
 * and each hostile backend fails with a message naming the rule it breaks.
 */
import { type GuestPolicy, guestPresets } from '@tdxsim/guest';
import { hypervVmm } from '@tdxsim/host-hyperv';
import { kvmVmm } from '@tdxsim/host-kvm';
import {
  type BuiltTd,
  buildTd,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  Reg,
  sharedBit,
  type TdExitEvent,
  TdvmcallStatus,
  type TdxModule,
  VmExitReason,
  type Vmm,
  type VmmFactory,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  type ConformanceRuleId,
  hostileVmms,
  policyGuest,
  runConformance,
  type ScenarioGuest,
  TestkitError,
  toVmmModule,
} from '../src/index.js';
import { vmmConformance } from '../src/vitest.js';

/**
 * A user-written backend: AUG on demand at the level an ACCEPT exit asks for, whole MapGPA ranges converted in one
 * go, with the TLB-tracking protocol KVM follows (BLOCK, TRACK, kick every vCPU, REMOVE).
 */
class UserVmm implements Vmm {
  constructor(
    readonly module: TdxModule,
    readonly td: BuiltTd,
  ) {}

  async onTdExit({ regs }: TdExitEvent): Promise<Gprs> {
    const { module, td } = this;
    const reason = Number((regs[Reg.RAX] as bigint) & 0xffffn);
    const shared = BigInt(sharedBit(td.gpaw));
    if (reason === VmExitReason.EPT_VIOLATION && (regs[Reg.R8] as bigint) < shared) {
      const eeq = regs[Reg.RDX] as bigint;
      const level = (eeq & 0xfn) === 1n && ((eeq >> 32n) & 7n) === 1n ? 1 : 0;
      const span = 4096 * 512 ** level;
      const gpa = Number(regs[Reg.R8]) - (Number(regs[Reg.R8]) % span);
      const truth = module.privatePage(td.tdr, gpa);
      if (truth.state !== 'FREE' || truth.level < level) return makeGprs();
      await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl);
      await td.host.pageAug(
        td.tdr,
        gpa,
        level,
        level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k(),
      );
    }
    if (reason !== VmExitReason.TDCALL) return makeGprs();
    const start = Number((regs[Reg.R12] as bigint) & ~shared);
    const toShared = ((regs[Reg.R12] as bigint) & shared) !== 0n;
    const ept = module.sharedEpt(td.tdr);
    for (let gpa = start; gpa < start + Number(regs[Reg.R13]); gpa += 4096) {
      let truth = module.privatePage(td.tdr, gpa);
      if (toShared && truth.hpa !== undefined && truth.level === 1) {
        // A 2M page the request covers in part is split first.
        const base = gpa - (gpa % 2 ** 21);
        await td.host.rangeBlock(td.tdr, base, 1);
        await this.#track();
        await td.host.pageDemote(td.tdr, base, 1, td.allocator.alloc4k());
        truth = module.privatePage(td.tdr, gpa);
      }
      if (toShared && truth.hpa !== undefined) {
        await td.host.rangeBlock(td.tdr, gpa, 0);
        await this.#track();
        await td.host.pageRemove(td.tdr, gpa, 0);
      }
      if (toShared && ept.lookup(gpa) === undefined) ept.map(gpa, td.allocator.alloc4k());
      if (!toShared) ept.unmap(gpa);
    }
    return makeGprs({ r10: TdvmcallStatus.SUCCESS });
  }

  /** TDH.MEM.TRACK, then every vCPU out of guest mode once. */
  async #track(): Promise<void> {
    await this.td.host.track(this.td.tdr);
    await Promise.all(this.td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
  }
}

/** The same backend without the kick after TRACK: REMOVE then finds the other vCPU still on the old TLB epoch. */
class NoKickVmm extends UserVmm {
  constructor(module: TdxModule, td: BuiltTd) {
    super(module, { ...td, tdvprs: [] });
  }
}

vmmConformance(kvmVmm(), { name: 'KvmVmm' });
// The variants run on the TD of `tdxsim run` with one guest: what differs is their MapGPA answers.
vmmConformance(kvmVmm({ pendingEventRate: 0.5, seed: 3 }), {
  name: 'KvmVmm, pendingEventRate 0.5',
  guests: ['linux'],
  vcpus: [2],
});
vmmConformance(hypervVmm({ chunkPages: 512 }), { name: 'HypervVmm, 512 pages a call' });
vmmConformance(hypervVmm({ chunkPages: 64 }), {
  name: 'HypervVmm, 64 pages a call',
  guests: ['linux'],
  vcpus: [2],
});
vmmConformance(UserVmm);

/** The rule each hostile backend is known to break (from its script; the test checks the kit sees it). */
const BROKEN: Readonly<Record<string, ConformanceRuleId>> = {
  'never-progresses': 'retry-progress',
  'progress-then-stall': 'retry-progress',
  'r11-below-start': 'retry-r11-in-range',
  'r11-at-end': 'retry-r11-in-range',
  'r11-past-end': 'retry-r11-in-range',
  'r11-huge': 'retry-r11-in-range',
  'r11-unaligned': 'retry-r11-aligned',
  'r11-shared-bit-flipped': 'retry-r11-direction',
  'status-outside-ghci': 'ghci-status',
  'success-without-converting': 'conversion-backed',
  'converts-less': 'conversion-backed',
  'converts-more': 'conversion-within-request',
  'retry-then-error': 'guest-conversions-complete',
  're-aug-accepted': 'conversion-within-request',
  'shared-page-aliased': 'module-invariants',
  'shared-maps-td-page': 'module-invariants',
  'shared-keeps-private': 'conversion-backed',
  'inconsistent-replies': 'retry-r11-in-range',
};

describe('hostile backends fail conformance, naming the broken rule', () => {
  it('covers the whole catalog', () => {
    expect(Object.keys(BROKEN).sort()).toEqual(hostileVmms.map((h) => h.name).sort());
  });

  it.each(hostileVmms.map((h) => [h.name, h] as const))('%s', async (name, hostile) => {
    const checks = await runConformance(hostile.module({ seed: 1 }), { guests: ['strict'], vcpus: [2] });
    const rule = BROKEN[name];
    const check = checks.find((c) => c.rule === rule);
    expect(check?.passed).toBe(false);
    expect(check?.message).toMatch(new RegExp(`^${rule} broken \\(`));
    expect(check?.message).toMatch(/MapGPA R12=0x|\[shared-ept-|MapGPA failed|accept failed/);
  });
});

describe('TLB tracking', () => {
  it('a backend that skips the kick after TRACK fails the rule naming TLB tracking (two vCPUs)', async () => {
    const checks = await runConformance(NoKickVmm, { guests: ['linux'], vcpus: [2] });
    const tlb = checks.find((c) => c.rule === 'tlb-tracking');
    expect(tlb?.passed).toBe(false);
    expect(tlb?.title).toMatch(/^TLB tracking: /);
    expect(tlb?.message).toMatch(/TDH\.MEM\.PAGE\.REMOVE .* → TLB_TRACKING_NOT_DONE/);
    expect(checks.find((c) => c.rule === 'guest-conversions-complete')?.passed).toBe(false);
  });

  it('the same backend passes on one vCPU: the exiting vCPU is the only one, so only a two-vCPU TD catches it', async () => {
    const checks = await runConformance(NoKickVmm, { guests: ['linux'], vcpus: [1] });
    expect(checks.filter((c) => !c.passed).map((c) => c.rule)).toEqual([]);
  });
});

describe('the guests that drive the workloads', () => {
  it('any ScenarioGuest drives them, is closed after each workload, and the rule names it and the TD shapes', async () => {
    // A policy of one's own (Linux without the R11 range check: an honest backend never shows the difference).
    const noR11Check = policyGuest({
      ...guestPresets.linux,
      name: 'linux-no-r11-check',
      mapGpa: {
        ...guestPresets.linux.mapGpa,
        r11: { bounds: 'none', aligned: false, withinRequest: false, pastEnd: 'done' },
      },
    });
    let booted = 0;
    let closed = 0;
    const counted: ScenarioGuest = {
      name: 'counted-linux',
      factory: (options) => async (cpu, trace, cpus) => {
        const guest = await policyGuest('linux').factory(options)(cpu, trace, cpus);
        booted++;
        return Object.assign(guest, {
          close: async () => {
            closed++;
          },
        });
      },
    };
    const checks = await runConformance(kvmVmm(), { guests: [counted, noR11Check, 'strict'], vcpus: [1] });
    expect(checks.filter((c) => !c.passed)).toEqual([]);
    expect(booted).toBeGreaterThan(0);
    expect(closed).toBe(booted);
    expect(checks.find((c) => c.rule === 'guest-conversions-complete')?.title).toBe(
      'the counted-linux, linux-no-r11-check and strict guests complete every workload of `tdxsim run`, on TDs of 1 vCPU',
    );
  });

  it('refuses an unknown preset, a malformed policy and a guest of no known shape', async () => {
    expect(() => policyGuest('nope' as 'linux')).toThrow(/unknown guest preset "nope"/);
    expect(() => policyGuest({ name: 'x' } as unknown as GuestPolicy)).toThrow(TestkitError);
    await expect(
      runConformance(kvmVmm(), { guests: [{ name: 'x' } as unknown as ScenarioGuest] }),
    ).rejects.toThrow(/guests\[0\]\.factory must be a function/);
  });
});

describe('toVmmModule: the three backend shapes', () => {
  it('takes a class, a factory and a ContainerModule alike', async () => {
    const module = kvmVmm();
    expect(toVmmModule(module)).toBe(module);
    const factory: VmmFactory = async (tdxModule, build) => {
      const td = await buildTd(tdxModule, build);
      const vmm = new UserVmm(tdxModule, td);
      return { vmm, td, run: () => td.run(vmm) };
    };
    for (const source of [UserVmm, factory]) {
      const checks = await runConformance(source, { guests: ['strict'], vcpus: [2] });
      expect(checks.filter((c) => !c.passed)).toEqual([]);
    }
  });

  it('refuses anything else', () => {
    expect(() => toVmmModule(42 as never)).toThrow(/expected a ContainerModule, a VmmFactory or a Vmm class/);
  });
});
