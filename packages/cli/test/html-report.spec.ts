import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCatalog } from '../src/catalog/catalog.js';
import { runMatrix } from '../src/matrix/run-matrix.js';
import { STATE_COLOURS } from '../src/report/gpa-map-svg.js';
import { renderHtmlReport } from '../src/report/html-report.js';
import { buildRunReport } from '../src/report/json-report.js';
import type { ScenarioSpec } from '../src/scenario/scenario-result.js';

const CHROMIUM = process.env.TDXSIM_CHROMIUM ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) {
  // Said out loud: a skipped browser test must never look like a passed one.
  console.warn(
    `html-report.spec.ts: SKIPPED the headless-browser checks: no Chromium at ${CHROMIUM} (install Debian's chromium, as .ci/run does)`,
  );
}

const dir = mkdtempSync(join(tmpdir(), 'tdxsim-html-'));
const POLICIES = ['linux', 'strict'];
const VMMS = ['kvm', 'hyperv-512', 'never-progresses'];
const WORKLOADS = ['swiotlb-1g', 'dma-small'];

describe.skipIf(!hasChromium)('the HTML report in headless Chromium', () => {
  let browser: Browser;
  let file: string;
  const requests: string[] = [];

  beforeAll(async () => {
    const catalog = await buildCatalog();
    const specs: ScenarioSpec[] = VMMS.flatMap((vmm) =>
      POLICIES.flatMap((policy) => WORKLOADS.map((workload) => ({ policy, vmm, workload, seed: 1 }))),
    );
    const { results, details } = await runMatrix({ specs, catalog, backendFiles: [], jobs: 1, detail: true });
    const report = buildRunReport({
      seed: 1,
      checkEvery: undefined,
      fuse: 8192,
      policies: POLICIES,
      vmms: catalog.vmms.filter((v) => VMMS.includes(v.name)),
      workloads: WORKLOADS,
      results,
      wallMs: 1,
    });
    file = join(dir, 'report.html');
    writeFileSync(file, renderHtmlReport(report, details));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
  });

  it('renders the matrix, the table and a GPA map and timeline per scenario, fetching nothing', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('request', (request) => requests.push(request.url()));
    await page.goto(pathToFileURL(file).href);
    expect(await page.title()).toBe('tdxsim run report');

    // The matrix: one row per VMM, one cell per policy, coloured by the worst outcome.
    expect(await page.locator('#matrix tbody tr').count()).toBe(VMMS.length);
    expect(await page.locator('#matrix tbody td').count()).toBe(VMMS.length * POLICIES.length);
    expect(await page.locator('#matrix tbody tr:has(th:text-is("kvm")) td.outcome-ok').count()).toBe(2);
    expect(
      await page
        .locator('#matrix tbody tr:has(th:text-is("never-progresses")) td.outcome-failed-safely')
        .count(),
    ).toBe(2);
    // The first row is kvm: its cells are ok, drawn in the ok colour.
    const cellColour = await page.evaluate(
      "getComputedStyle(document.querySelector('#matrix tbody tr td')).backgroundColor",
    );
    expect(cellColour).toBe('rgb(200, 230, 201)');

    // One row and one expandable section per scenario, each with a map and a timeline.
    const scenarios = VMMS.length * POLICIES.length * WORKLOADS.length;
    expect(await page.locator('#results tbody tr').count()).toBe(scenarios);
    expect(await page.locator('details.scenario').count()).toBe(scenarios);
    expect(await page.locator('svg.gpa-map').count()).toBe(scenarios);
    expect(await page.locator('svg.timeline').count()).toBe(scenarios);

    // swiotlb on KVM: the buffer's band goes pending → shared → private, so all three colours are drawn.
    const swiotlb = page.locator('details.scenario', { hasText: 'linux/kvm/swiotlb-1g' });
    const fills = await swiotlb
      .locator('svg.gpa-map rect')
      .evaluateAll((rects) => rects.map((r) => r.getAttribute('fill')));
    for (const state of ['private-unaccepted', 'shared', 'private-accepted'])
      expect(fills).toContain(STATE_COLOURS[state]);
    expect(await swiotlb.locator('svg.timeline line.call').count()).toBeGreaterThan(100);

    // The failed-safely scenario says why and shows quarantined pages.
    const stalled = page.locator('details.scenario', { hasText: 'strict/never-progresses/swiotlb-1g' });
    await expect.poll(() => stalled.locator('summary').textContent()).toMatch(/failed-safely .*RETRY/);
    const stalledFills = await stalled
      .locator('svg.gpa-map rect')
      .evaluateAll((rects) => rects.map((r) => r.getAttribute('fill')));
    expect(stalledFills).toContain(STATE_COLOURS.quarantined);

    // Open a section, check the map is laid out at its size, and keep a screenshot.
    await swiotlb.locator('summary').click();
    // 480 × 192 inside a 1px border.
    const box = await swiotlb.locator('svg.gpa-map').boundingBox();
    expect(box?.width).toBe(482);
    expect(box?.height).toBe(194);
    const shot = join(dir, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(20_000);

    // Self-contained: the only thing loaded is the file itself.
    expect(requests.every((url) => url.startsWith('file:'))).toBe(true);
    await page.close();
  }, 60_000);
});
