import { describe, expect, it } from 'vitest';
import { SeptState } from '../../src/abi/sept-state.js';
import { checkInvariants } from '../../src/index.js';
import { SeptTable } from '../../src/sept/sept-table.js';
import { setup } from '../harness.js';
import { aug, corruptChild } from '../sept/helpers.js';

const PAGE = 0x1000;

/** A TD with 4K pages AUGed at 0x1000 and 0x2000; the Secure-EPT table holding them. */
async function twoPages() {
  const { module, td } = await setup({ skipFinalize: true });
  const first = await aug(module, td, PAGE, 0);
  const second = await aug(module, td, 2 * PAGE, 0);
  const sept = module.state.tds.get(td.tdr)?.sept;
  if (sept === undefined) throw new Error('the TD has no Secure-EPT');
  const leaf = sept.walk(2 * PAGE, 0);
  return { module, td, first, second, leaf };
}

describe('checkInvariants names the users of a host page it finds wrong', () => {
  it('a sound TD has no violation', async () => {
    const { module } = await twoPages();
    expect(checkInvariants(module)).toEqual([]);
  });

  it('two guest pages on one host page: both named by TD and GPA', async () => {
    const { module, td, first, leaf } = await twoPages();
    leaf.table.hpa[leaf.index] = first;
    const owned = checkInvariants(module).filter((v) => v.rule === 'hpa-owned-twice');
    const tdName = `TD 0x${td.tdr.toString(16)}`;
    expect(owned).toEqual([
      {
        rule: 'hpa-owned-twice',
        message: `0x${first.toString(16)} (level 0) used by ${tdName} GPA 0x1000 and ${tdName} GPA 0x2000`,
      },
    ]);
  });

  it('a host page whose PAMT disagrees with the Secure-EPT: the user named with what PAMT holds', async () => {
    const { module, td, second } = await twoPages();
    const pamt = module.state.pamt;
    pamt.set(second, 0, pamt.getType(second, 0), td.tdr + PAGE);
    const disagreements = checkInvariants(module).filter((v) => v.rule === 'pamt-sept-agreement');
    expect(disagreements.map((v) => v.message)).toEqual([
      `TD 0x${td.tdr.toString(16)} GPA 0x2000: PAMT of 0x${second.toString(16)} at level 0 is PT_REG owner 0x${(td.tdr + PAGE).toString(16)}, expected PT_REG owner 0x${td.tdr.toString(16)}`,
    ]);
  });
});

describe('checkInvariants on a TD of more users than one chunk of its tables', () => {
  it('names the users of pages found late in the walk, as early ones', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const count = 4_300; // past 4,096 users: the second chunk of PageUsers, and nine blocks of HpaUsers
    const hpas: number[] = [];
    for (let i = 0; i < count; i++) hpas.push(await aug(module, td, (i + 1) * PAGE, 0));
    expect(checkInvariants(module)).toEqual([]);
    const sept = module.state.tds.get(td.tdr)?.sept;
    if (sept === undefined) throw new Error('the TD has no Secure-EPT');
    // The last page maps the host page of the tenth; the one before it has a PAMT owner of another TD.
    const last = sept.walk(count * PAGE, 0);
    last.table.hpa[last.index] = hpas[9] as number;
    const beforeLast = hpas[count - 2] as number;
    const pamt = module.state.pamt;
    pamt.set(beforeLast, 0, pamt.getType(beforeLast, 0), td.tdr + PAGE);
    const tdName = `TD 0x${td.tdr.toString(16)}`;
    const hex = (n: number) => `0x${n.toString(16)}`;
    expect(checkInvariants(module)).toEqual([
      {
        rule: 'pamt-sept-agreement',
        message: `${tdName} GPA ${hex((count - 1) * PAGE)}: PAMT of ${hex(beforeLast)} at level 0 is PT_REG owner ${hex(td.tdr + PAGE)}, expected PT_REG owner ${hex(td.tdr)}`,
      },
      {
        rule: 'hpa-owned-twice',
        message: `${hex(hpas[9] as number)} (level 0) used by ${tdName} GPA ${hex(10 * PAGE)} and ${tdName} GPA ${hex(count * PAGE)}`,
      },
      {
        rule: 'pamt-sept-agreement',
        message: `PAMT ${hex(hpas[count - 1] as number)} level 0 is PT_REG but nothing uses it`,
      },
    ]);
  });
});

describe('checkInvariants names the users of a table by their entry', () => {
  const hex = (n: number) => `0x${n.toString(16)}`;

  it('a guest page on the host page of a SEPT table: the table named by its GPA and level', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const far = 5 * 2 ** 21 + PAGE; // a level-0 table under entry 5 of its level-1 table
    await aug(module, td, PAGE, 0);
    await aug(module, td, far, 0);
    const sept = module.state.tds.get(td.tdr)?.sept;
    if (sept === undefined) throw new Error('the TD has no Secure-EPT');
    const near = sept.walk(PAGE, 0);
    const tablePage = sept.walk(far, 0).table.pageHpa;
    near.table.hpa[near.index] = tablePage;
    const tdName = `TD ${hex(td.tdr)}`;
    expect(checkInvariants(module).filter((v) => v.rule === 'hpa-owned-twice')).toEqual([
      {
        rule: 'hpa-owned-twice',
        message: `${hex(tablePage)} (level 0) used by ${tdName} SEPT table ${hex(5 * 2 ** 21)}/0 and ${tdName} GPA 0x1000`,
      },
    ]);
  });

  it('2M guest pages past the first entry of their table: each named by its own GPA', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const MIB2 = 2 ** 21;
    const pages: number[] = [];
    for (const index of [1, 3, 300]) pages.push(await aug(module, td, index * MIB2, 1));
    expect(checkInvariants(module)).toEqual([]);
    const pamt = module.state.pamt;
    for (const hpa of pages) pamt.set(hpa, 1, pamt.getType(hpa, 1), td.tdr + PAGE);
    const tdName = `TD ${hex(td.tdr)}`;
    expect(checkInvariants(module).map((v) => v.message)).toEqual(
      [1, 3, 300].map(
        (index, n) =>
          `${tdName} GPA ${hex(index * MIB2)}: PAMT of ${hex(pages[n] as number)} at level 1 is PT_REG owner ${hex(td.tdr + PAGE)}, expected PT_REG owner ${hex(td.tdr)}`,
      ),
    );
  });

  it('a guest page and a child table of one table, both used twice: each named as what it is', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const MIB2 = 2 ** 21;
    await aug(module, td, PAGE, 0); // a level-0 table under entry 0 of the level-1 table
    const big = await aug(module, td, 3 * MIB2, 1);
    await aug(module, td, 5 * MIB2, 1);
    const sept = module.state.tds.get(td.tdr)?.sept;
    if (sept === undefined) throw new Error('the TD has no Secure-EPT');
    const small = sept.walk(PAGE, 0);
    small.table.hpa[small.index] = small.table.pageHpa;
    const other = sept.walk(5 * MIB2, 1);
    other.table.hpa[other.index] = big;
    const tdName = `TD ${hex(td.tdr)}`;
    expect(checkInvariants(module).filter((v) => v.rule === 'hpa-owned-twice')).toEqual([
      {
        rule: 'hpa-owned-twice',
        message: `${hex(big)} (level 1) used by ${tdName} GPA 0x600000 and ${tdName} GPA 0xa00000`,
      },
      {
        rule: 'hpa-owned-twice',
        message: `${hex(small.table.pageHpa)} (level 0) used by ${tdName} SEPT table 0x0/0 and ${tdName} GPA 0x1000`,
      },
    ]);
  });
});

describe('checkInvariants names the users of a corrupted table as it names one user per record', () => {
  const hex = (n: number) => `0x${n.toString(16)}`;

  it('a child table of level -1 under a level-0 entry: its level named as a byte (255)', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const page = await aug(module, td, PAGE, 0);
    const leaf = module.state.tds.get(td.tdr)?.sept?.walk(PAGE, 0).table;
    if (leaf === undefined) throw new Error('the TD has no Secure-EPT');
    leaf.state[5] = SeptState.NL_MAPPED;
    leaf.hpa[5] = page;
    corruptChild(leaf, 5, new SeptTable(-1, page));
    const tdName = `TD ${hex(td.tdr)}`;
    expect(checkInvariants(module, { locks: false }).filter((v) => v.rule === 'hpa-owned-twice')).toEqual([
      {
        rule: 'hpa-owned-twice',
        message: `${hex(page)} (level 0) used by ${tdName} GPA 0x1000 and ${tdName} SEPT table 0x5000/255`,
      },
    ]);
  });

  it('a root table of level -1: its pages named by the span of that level', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const page = await aug(module, td, PAGE, 0);
    const root = module.state.tds.get(td.tdr)?.sept?.root;
    if (root === undefined) throw new Error('the TD has no Secure-EPT');
    (root as { level: number }).level = -1;
    for (const i of [7, 9]) {
      root.state[i] = SeptState.MAPPED;
      root.hpa[i] = page;
    }
    const tdName = `TD ${hex(td.tdr)}`;
    expect(checkInvariants(module, { locks: false }).filter((v) => v.rule === 'hpa-owned-twice')).toEqual([
      {
        rule: 'hpa-owned-twice',
        message: `${hex(page)} (level -1) used by ${tdName} GPA 0x38 and ${tdName} GPA 0x48`,
      },
    ]);
  });
});

describe('checkInvariants on the epoch counts and the shared EPT', () => {
  it('counts the vCPUs in guest by the parity of their epoch against the refcounts', async () => {
    const { module, td } = await twoPages();
    const control = module.state.tds.get(td.tdr);
    const vcpu = control?.vcpus.values().next().value;
    if (control === undefined || vcpu === undefined) throw new Error('the TD has no vCPU');
    const tdName = `TD 0x${td.tdr.toString(16)}`;
    vcpu.run = 'in-guest';
    vcpu.epoch = 3;
    expect(checkInvariants(module)).toEqual([
      { rule: 'epoch-refcount', message: `${tdName}: refcounts 0/0 but vCPUs in guest 0/1` },
    ]);
    control.epochRefcount[1] = 1;
    expect(checkInvariants(module)).toEqual([]);
    vcpu.epoch = 4;
    expect(checkInvariants(module)).toEqual([
      { rule: 'epoch-refcount', message: `${tdName}: refcounts 0/1 but vCPUs in guest 1/0` },
    ]);
  });

  it('names shared frames in the order they were mapped: aliased host pages, private aliases, TD pages', async () => {
    const { module, td, first } = await twoPages();
    const ept = module.sharedEpt(td.tdr);
    const tdName = `TD 0x${td.tdr.toString(16)}`;
    const hosts = [td.allocator.alloc4k(), td.allocator.alloc4k(), td.allocator.alloc4k()] as const;
    const hex = (n: number): string => `0x${n.toString(16)}`;
    // Frames mapped going down (one batch, listed 0x12000 first), then 0x20000 on the host page of 0x12000.
    for (let i = 0; i < 3; i++) ept.map(0x12_000 - i * PAGE, hosts[i] as number);
    ept.map(0x20_000, hosts[0]);
    ept.map(PAGE, td.allocator.alloc4k());
    ept.map(0x30_000, first);
    expect(checkInvariants(module)).toEqual([
      {
        rule: 'shared-ept-aliasing',
        message: `${tdName}: host page ${hex(hosts[0])} shared at 0x12000 and 0x20000`,
      },
      { rule: 'shared-ept-private-alias', message: `${tdName}: frame 0x1000 mapped private and shared` },
      {
        rule: 'shared-ept-td-page',
        message: `${tdName}: shared frame 0x30000 maps TD-owned host page ${hex(first)}`,
      },
    ]);
  });

  it('names the frame a host page was last shared at, with few shared frames as with many', async () => {
    for (const others of [0, 40]) {
      const { module, td } = await twoPages();
      const ept = module.sharedEpt(td.tdr);
      const tdName = `TD 0x${td.tdr.toString(16)}`;
      const host = td.allocator.alloc4k();
      // Frames on host pages of their own first (40: past the frames the rule scans back over), then three on one.
      for (let i = 0; i < others; i++) ept.map(0x100_000 + i * 2 * PAGE, td.allocator.alloc4k());
      for (const frame of [0x40_000, 0x50_000, 0x60_000]) ept.map(frame, host);
      expect(checkInvariants(module)).toEqual([
        {
          rule: 'shared-ept-aliasing',
          message: `${tdName}: host page 0x${host.toString(16)} shared at 0x40000 and 0x50000`,
        },
        {
          rule: 'shared-ept-aliasing',
          message: `${tdName}: host page 0x${host.toString(16)} shared at 0x50000 and 0x60000`,
        },
      ]);
    }
  });
});
