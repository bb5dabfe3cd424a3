import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TdGuest } from '@tdxsim/guest';
import { assertInvariants, checkVmmView, TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { HypervError, HypervTables, HypervVmm } from '../src/index.js';

const MIB = 2 ** 20;
const MIB2 = 2 * MIB;
const PAGE = 4096;

// The Hyper-V backend decides from its own record of what it mapped (HypervTables), never from the module's
// S-EPT, and exposes that record as its view.

describe('HypervVmm keeps its own table', () => {
  it('its sources never look into the module’s truth (privatePage, ensureSeptTables, module.state, EPT read-back)', () => {
    const src = join(import.meta.dirname, '..', 'src');
    for (const name of readdirSync(src).filter((n) => n.endsWith('.ts'))) {
      const code = readFileSync(join(src, name), 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
      for (const pattern of [
        /\bprivatePage\s*\(/,
        /\bensureSeptTables\b/,
        /\.state\b/,
        // Its own record of shared mappings (`tables.shared`) is a SharedEpt too: reading that is reading its own
        // table; reading the module's shared EPT (any other receiver) is not allowed.
        /(?<!\bshared)\.lookup\s*\(/,
        /(?<!\bshared)\.entries\s*\(\s*\)/,
        /(?<!\b(?:shared|attributes))\.runs\s*\(/,
      ])
        expect({ name, found: pattern.test(code) }).toEqual({ name, found: false });
    }
  });

  it('its view equals the S-EPT and shared EPT through 2M AUGs, a partial conversion (DEMOTE) and back', async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });
    const vmm = await HypervVmm.create(module, {}, { gpaw: 48, vcpus: 1 });
    vmm.run();
    const guest = await TdGuest.boot(vmm.td.guest(0), { memoryBytes: 8 * MIB, policy: 'strict' });
    const view = () => checkVmmView(module, vmm.td.tdr, vmm.view());
    expect(await guest.acceptAll()).toMatchObject({ kind: 'ok' });
    expect([...vmm.view().privateMappings()].filter((m) => m.level === 1)).toHaveLength(4);
    expect(view()).toEqual([]);
    expect(await guest.setShared(MIB2 + 3 * PAGE, 5 * PAGE)).toMatchObject({ kind: 'ok' });
    expect(vmm.counters.seamcalls['TDH.MEM.PAGE.DEMOTE']).toBe(1);
    expect([...vmm.view().sharedMappings()]).toHaveLength(5);
    expect(view()).toEqual([]);
    expect(await guest.setPrivate(MIB2 + 3 * PAGE, 5 * PAGE)).toMatchObject({ kind: 'ok' });
    expect([...vmm.view().sharedMappings()]).toHaveLength(0);
    expect(view()).toEqual([]);
    expect(guest.check(module, vmm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('keeps a buffer made shared as a few runs, also when its host pages come back from the free list (LIFO)', async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });
    const vmm = await HypervVmm.create(module, {}, { gpaw: 48, vcpus: 2 });
    vmm.run();
    const guest = await TdGuest.boot(vmm.td.guest(0), { memoryBytes: 64 * MIB, policy: 'linux' });
    const ept = module.sharedEpt(vmm.td.tdr);
    const view = () => checkVmmView(module, vmm.td.tdr, vmm.view());
    // 16 MiB at 8 MiB: fresh host pages (going up), then freed in GPA order and handed out again last freed first
    // (going down), then a part of it at an unaligned edge.
    const rounds: [start: number, bytes: number][] = [
      [8 * MIB, 16 * MIB],
      [8 * MIB, 16 * MIB],
      [9 * MIB + 3 * PAGE, 5 * MIB],
    ];
    for (const [round, [start, bytes]] of rounds.entries()) {
      expect(await guest.setShared(start, bytes)).toMatchObject({ kind: 'ok' });
      expect(ept.size).toBe(bytes / PAGE);
      expect(vmm.tables.shared.size).toBe(bytes / PAGE);
      expect(ept.runCount).toBeLessThanOrEqual(4);
      expect(vmm.tables.shared.runCount).toBeLessThanOrEqual(4);
      expect([...ept.runs()].some((run) => run.step === -1)).toBe(round > 0);
      expect(view()).toEqual([]);
      expect(await guest.setPrivate(start, bytes)).toMatchObject({ kind: 'ok' });
      expect([ept.size, ept.runCount, vmm.tables.shared.size]).toEqual([0, 0, 0]);
      expect(view()).toEqual([]);
      assertInvariants(module);
    }
    expect(guest.check(module, vmm.td.tdr)).toEqual([]);
  });

  it('the initial image goes in through the backend, so its record has it', async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });
    const bytes = new Uint8Array(PAGE).fill(7);
    const vmm = await HypervVmm.create(module, {}, { gpaw: 48, initialImage: [{ gpa: 0x5000, bytes }] });
    vmm.run();
    expect([...vmm.view().privateMappings()].map((m) => [m.gpa, m.level])).toEqual([[0x5000, 0]]);
    expect(checkVmmView(module, vmm.td.tdr, vmm.view())).toEqual([]);
    expect(await vmm.td.guest(0).read(0x5000, 2)).toEqual({ kind: 'ok', data: new Uint8Array([7, 7]) });
    expect(vmm.counters.seamcalls).toMatchObject({
      'TDH.MEM.PAGE.ADD': 1,
      'TDH.MR.EXTEND': 16,
      'TDH.MR.FINALIZE': 1,
    });
  });

  it('records 4K leaves per 2M region: AUG, BLOCK, REMOVE and DEMOTE read back the same through every accessor', () => {
    const tables = new HypervTables(4);
    const base = 3 * MIB2;
    expect(tables.missingTables(base, 0)).toEqual([4, 3, 2, 1]);
    for (const [level, gpa] of [
      [4, base],
      [3, base],
      [2, base],
      [1, base],
    ] as const)
      tables.linked(level, gpa);
    expect(tables.missingTables(base + PAGE, 0)).toEqual([]);
    tables.mapped({ gpa: base + 5 * PAGE, level: 0, hpa: 2 ** 40 + PAGE, blocked: false });
    tables.mapped({ gpa: base + 511 * PAGE, level: 0, hpa: 2 ** 40, blocked: false });
    tables.mapped({ gpa: base + 5 * PAGE, level: 0, hpa: 2 ** 40 + PAGE, blocked: true });
    expect(tables.hasLeaf(base + 5 * PAGE + 8)).toBe(true);
    expect(tables.hasLeaf(base + 6 * PAGE)).toBe(false);
    expect(tables.leafAt(base + 5 * PAGE + 8)).toEqual({
      gpa: base + 5 * PAGE,
      level: 0,
      hpa: 2 ** 40 + PAGE,
      blocked: true,
    });
    expect(tables.leafAt(base + 6 * PAGE)).toBeUndefined();
    expect(tables.leavesIn(base, base + MIB2).map((l) => [l.gpa, l.blocked])).toEqual([
      [base + 5 * PAGE, true],
      [base + 511 * PAGE, false],
    ]);
    tables.removed(0, base + 5 * PAGE);
    tables.removed(0, base + 5 * PAGE);
    expect(tables.hasLeaf(base + 5 * PAGE)).toBe(false);
    expect([...tables.privateMappings()]).toEqual([{ gpa: base + 511 * PAGE, level: 0, hpa: 2 ** 40 }]);
    tables.removed(0, base + 511 * PAGE);
    expect([...tables.privateMappings()]).toEqual([]);
    // A 2M leaf demoted becomes 512 4K leaves on the same host pages, in GPA order.
    const huge = 5 * MIB2;
    tables.mapped({ gpa: huge, level: 1, hpa: 2 ** 41, blocked: false });
    expect(tables.leafAt(huge + 7 * PAGE)).toEqual({ gpa: huge, level: 1, hpa: 2 ** 41, blocked: false });
    tables.demoted(huge);
    expect(tables.hasPageTable(huge)).toBe(true);
    const leaves = tables.leavesIn(huge, huge + MIB2);
    expect(leaves).toHaveLength(512);
    expect(
      leaves.every((l, i) => l.gpa === huge + i * PAGE && l.hpa === 2 ** 41 + i * PAGE && !l.blocked),
    ).toBe(true);
    expect([...tables.privateMappings()]).toHaveLength(512);
  });

  it('its shortcuts (the last region looked up, the last region fully linked) never answer for a stale record', () => {
    const tables = new HypervTables(3);
    const a = 3 * MIB2;
    const b = 9 * MIB2;
    expect(tables.missingTables(a + PAGE, 0)).toEqual([3, 2, 1]);
    for (const level of [3, 2, 1]) tables.linked(level, a);
    expect(tables.missingTables(a + PAGE, 0)).toEqual([]);
    // The next region of the same 1G table still lacks its own 2M-level table.
    expect(tables.missingTables(a + MIB2, 0)).toEqual([1]);
    expect(tables.missingTables(a + 2 * PAGE, 0)).toEqual([]);
    // A region emptied and mapped again, with another region looked up in between and not.
    tables.mapped({ gpa: a, level: 0, hpa: 2 ** 40, blocked: false });
    tables.removed(0, a);
    expect(tables.hasLeaf(a)).toBe(false);
    tables.mapped({ gpa: a + PAGE, level: 0, hpa: 2 ** 40 + PAGE, blocked: false });
    expect(tables.hasLeaf(a)).toBe(false);
    expect(tables.leafAt(a + PAGE)).toEqual({ gpa: a + PAGE, level: 0, hpa: 2 ** 40 + PAGE, blocked: false });
    tables.mapped({ gpa: b, level: 0, hpa: 2 ** 41, blocked: false });
    tables.removed(0, a + PAGE);
    expect(tables.hasLeaf(a + PAGE)).toBe(false);
    expect(tables.hasLeaf(b)).toBe(true);
    tables.removed(0, b);
    expect(tables.hasLeaf(b)).toBe(false);
    tables.mapped({ gpa: b + PAGE, level: 0, hpa: 2 ** 41, blocked: true });
    expect(tables.hasLeaf(b)).toBe(false);
    expect(tables.leafAt(b + PAGE)?.blocked).toBe(true);
    expect([...tables.privateMappings()]).toEqual([{ gpa: b + PAGE, level: 0, hpa: 2 ** 41 }]);
  });

  it('mapped4k and hasLeafAt (the ACCEPT exit path) record and answer as mapped and hasLeaf do', () => {
    const viaRecord = new HypervTables(4);
    const viaFast = new HypervTables(4);
    const steps: [number, number, boolean][] = [
      [5 * MIB2, 2 ** 40, false],
      [5 * MIB2 + PAGE, 2 ** 40 + PAGE, true],
      [5 * MIB2 + PAGE, 2 ** 40 + 9 * PAGE, false],
      [7 * MIB2 + 511 * PAGE, 2 ** 41, false],
    ];
    for (const [gpa, hpa, blocked] of steps) {
      viaRecord.mapped({ gpa, level: 0, hpa, blocked });
      viaFast.mapped4k(gpa, hpa, blocked);
      for (const probe of [
        5 * MIB2,
        5 * MIB2 + PAGE,
        5 * MIB2 + 2 * PAGE + 17,
        7 * MIB2 + 511 * PAGE,
        9 * MIB2,
      ])
        expect(viaFast.hasLeafAt(probe)).toBe(viaRecord.hasLeaf(probe));
      expect(viaFast.leavesIn(0, 16 * MIB2)).toEqual(viaRecord.leavesIn(0, 16 * MIB2));
    }
    // The count of a region's leaves too: removing every leaf empties the region in both.
    for (const tables of [viaRecord, viaFast]) {
      tables.removed(0, 5 * MIB2);
      tables.removed(0, 5 * MIB2 + PAGE);
      tables.removed(0, 7 * MIB2 + 511 * PAGE);
    }
    expect([...viaFast.privateMappings()]).toEqual([]);
    expect([...viaRecord.privateMappings()]).toEqual([]);
    // A 2M leaf answers for every page under it.
    viaFast.mapped({ gpa: 12 * MIB2, level: 1, hpa: 2 ** 42, blocked: false });
    expect(viaFast.hasLeafAt(12 * MIB2 + 300 * PAGE + 5)).toBe(true);
    expect(viaFast.hasLeafAt(13 * MIB2)).toBe(false);
  });

  it('mapped4k and hasLeafAt refuse what mapped and hasLeaf refuse, with the same typed error, changing nothing', () => {
    const tables = new HypervTables(4);
    const refused = (call: () => unknown, argument: string): void => {
      let error: unknown;
      try {
        call();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(HypervError);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', argument });
    };
    refused(() => tables.mapped4k(PAGE + 7, 2 ** 40, false), 'gpa');
    refused(() => tables.mapped4k(-PAGE, 2 ** 40, false), 'gpa');
    refused(() => tables.mapped4k(2 ** 52, 2 ** 40, false), 'gpa');
    refused(() => tables.mapped4k(PAGE, 2 ** 40 + 1, false), 'hpa');
    refused(() => tables.mapped4k(PAGE, Number.NaN, false), 'hpa');
    refused(() => tables.mapped4k(PAGE, 2 ** 40, 1 as unknown as boolean), 'blocked');
    refused(() => tables.hasLeafAt(-PAGE), 'gpa');
    refused(() => tables.hasLeafAt(0.5), 'gpa');
    refused(() => tables.hasLeafAt(Number.NaN), 'gpa');
    expect([...tables.privateMappings()]).toEqual([]);
    expect(tables.hasLeafAt(0)).toBe(false);
  });
});
