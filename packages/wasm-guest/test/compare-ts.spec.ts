import { buildCatalog, type Catalog, runScenario } from '@tdxsim/cli';
import { type GuestPolicy, guestPresets } from '@tdxsim/guest';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadWasmGuest } from '../src/index.js';
import { exampleGuests, hasClang, hasRustc, rustGuest, warnIfSkipped } from './support/guests.js';
import {
  defaultPairs,
  type GuestRow,
  type Judged,
  judgeScenario,
  tsRow,
  wasmRow,
} from './support/judge-scenario.js';

warnIfSkipped('clang', 'compare-ts.spec.ts');
warnIfSkipped('rustc', 'compare-ts.spec.ts (the Rust guest)');

/** Linux's policy without the R11 range check: what kernel-guest-no-r11-check.c does. */
const linuxWithoutR11Check: GuestPolicy = {
  ...guestPresets.linux,
  name: 'linux-no-r11-check',
  mapGpa: {
    ...guestPresets.linux.mapGpa,
    r11: { bounds: 'none', aligned: false, withinRequest: false, pastEnd: 'done' },
  },
};

const R11_LYING = [
  'r11-below-start',
  'r11-at-end',
  'r11-past-end',
  'r11-huge',
  'r11-unaligned',
  'r11-shared-bit-flipped',
];

/** What two guests with the same behaviour must agree on, per scenario (the id names the VMM and the workload). */
const comparable = (judged: Judged) => {
  const { id, ...rest } = judged;
  return { scenario: id.split('/').slice(1).join('/'), ...rest };
};

async function matrix(row: GuestRow, pairs: ReturnType<typeof defaultPairs>): Promise<Judged[]> {
  const out: Judged[] = [];
  for (const { vmm, workload } of pairs) out.push(await judgeScenario(row, vmm, workload));
  return out;
}

describe.skipIf(!hasClang)('the C example guest against the TypeScript guest, scenario by scenario', () => {
  let catalog: Catalog;
  let pairs: ReturnType<typeof defaultPairs>;
  const tsLinux: Judged[] = [];
  beforeAll(async () => {
    catalog = await buildCatalog();
    pairs = defaultPairs(catalog.vmms, catalog.workloads);
    tsLinux.push(...(await matrix(tsRow('linux', 'linux'), pairs)));
  }, 600_000);

  it('the scenario driver of these tests judges the TypeScript guest exactly as tdxsim run does', async () => {
    // Every hostile backend and KVM on dma-small, plus every workload on the honest backends: each outcome and
    // reason the driver gives is the CLI's.
    const sample = pairs.filter(
      ({ vmm, workload }) => workload.name === 'dma-small' || vmm.kind === 'honest',
    );
    for (const { vmm, workload } of sample) {
      const cli = (
        await runScenario({ policy: 'linux', vmm: vmm.name, workload: workload.name, seed: 1 }, vmm, workload)
      ).result;
      const mine = tsLinux.find((j) => j.id === `linux/${vmm.name}/${workload.name}`);
      expect({ id: cli.id, outcome: mine?.outcome, rules: mine?.violations }).toEqual({
        id: cli.id,
        outcome: cli.outcome,
        rules: cli.violations.map((v) => v.rule),
      });
      expect(mine?.mapGpaCalls).toBe(cli.counters.mapGpaCalls);
      expect(mine?.pagesConverted).toBe(cli.counters.pagesConverted);
      expect(mine?.pagesQuarantined).toBe(cli.counters.pagesQuarantined);
    }
  });

  it('kernel-guest.c: the same outcome, reason, calls and pages as the linux policy in every scenario of the default matrix', async () => {
    const c = await matrix(wasmRow(await loadWasmGuest((await exampleGuests()).c)), pairs);
    expect(c.length).toBe(pairs.length);
    expect(c.map(comparable)).toEqual(tsLinux.map(comparable));
    // Not a vacuous match: the matrix holds every outcome but error.
    expect(new Set(c.map((j) => j.outcome))).toEqual(new Set(['ok', 'failed-safely']));
  });

  it('kernel-guest-no-r11-check.c: as linux without the R11 check, UNSAFE against the R11-lying backends for the reasons openvmm and coconutSvsm get', async () => {
    // Every hostile backend, and the honest ones on the small workloads (R11 is only followed after a RETRY; the GiB
    // workloads on honest backends run as for the intact guest, compared above).
    const sample = pairs.filter(
      ({ vmm, workload }) =>
        vmm.kind === 'hostile' || workload.name === 'churn' || workload.name === 'dma-small',
    );
    const defective = await matrix(wasmRow(await loadWasmGuest((await exampleGuests()).cNoR11Check)), sample);
    const model = await matrix(tsRow('linux-no-r11-check', linuxWithoutR11Check), sample);
    expect(defective.map(comparable)).toEqual(model.map(comparable));

    const lying = pairs.filter(({ vmm }) => R11_LYING.includes(vmm.name));
    const presets = await Promise.all(
      (['openvmm', 'coconutSvsm'] as const).map((p) =>
        matrix(tsRow(p, guestPresets[p] as GuestPolicy), lying),
      ),
    );
    for (const { vmm, workload } of lying) {
      const scenario = `${vmm.name}/${workload.name}`;
      const mine = defective.find((j) => j.id.endsWith(`/${scenario}`));
      const theirs = presets.map((rows) => rows.find((j) => j.id.endsWith(`/${scenario}`)));
      expect({ scenario, outcome: mine?.outcome, why: mine?.why }).toEqual({
        scenario,
        outcome: theirs[0]?.outcome,
        why: theirs[0]?.why,
      });
      expect(theirs[1]?.outcome).toBe(theirs[0]?.outcome);
    }
    const unsafe = defective
      .filter((j) => j.outcome === 'UNSAFE')
      .map((j) => `${j.id.split('/')[1]}: ${j.why}`);
    expect(new Set(unsafe)).toEqual(
      new Set([
        'r11-below-start: did-not-terminate',
        'r11-at-end: overclaim-shared',
        'r11-past-end: overclaim-shared',
        'r11-huge: overclaim-shared',
        'r11-unaligned: overclaim-shared',
        'r11-shared-bit-flipped: overclaim-shared',
        'inconsistent-replies: overclaim-shared',
      ]),
    );
    // The intact guest is safe in every one of those scenarios.
    expect(tsLinux.filter((j) => j.outcome === 'UNSAFE')).toEqual([]);
  });

  it.skipIf(!hasRustc)(
    'the Rust example: the same as the linux policy on the honest backends and the hostile ones on dma-small',
    async () => {
      const sample = pairs.filter(
        ({ vmm, workload }) => vmm.kind === 'honest' || workload.name === 'dma-small',
      );
      const rust = await matrix(wasmRow(await loadWasmGuest(await rustGuest())), sample);
      const expected = tsLinux.filter((j) =>
        rust.some((r) => comparable(r).scenario === comparable(j).scenario),
      );
      expect(rust.map(comparable)).toEqual(expected.map(comparable));
      expect(rust.length).toBe(sample.length);
    },
  );
});
