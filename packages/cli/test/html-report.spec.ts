/**
 * The HTML report in headless Chromium: the legend, the axes, the marked violation (page and call), the timeline
 * centred on it, the filter by outcome and the search box, and screenshots of them.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileTempDir } from '../../../test/temp-dir.js';
import { BAND_STATES } from '../src/report/gpa-map-svg.js';
import { FIXTURES, runCli } from './run-cli.js';

const CHROMIUM = process.env.TDXSIM_CHROMIUM ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) {
  // Said out loud: a skipped browser test must never look like a passed one.
  console.warn(
    `html-report.spec.ts: SKIPPED the headless-browser checks: no Chromium at ${CHROMIUM} (install Debian's chromium, as .ci/run does)`,
  );
}

const dir = fileTempDir('tdxsim-html-');
/** Screenshots stay here for a look (CI keeps the directory it prints). */
const shots = process.env.TDXSIM_SCREENSHOTS ?? dir;

describe.skipIf(!hasChromium)('the HTML report in headless Chromium', () => {
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];
  const file = join(dir, 'report.html');

  beforeAll(async () => {
    // Every outcome: ok (hyperv-512: its 1 GiB swiotlb is cheap, KVM's 4K one is not), failed-safely
    // (never-progresses), UNSAFE (openvmm on r11-past-end), error (a backend that throws); every scenario drawn.
    const run = await runCli([
      '--backend',
      join(FIXTURES, 'throwing-vmm.ts'),
      '--vmm',
      'hyperv-512,never-progresses,r11-past-end,throwing-vmm',
      '--policy',
      'linux,openvmm',
      '--workload',
      'swiotlb-1g,dma-small',
      '--html',
      file,
      '--html-detail',
      'all',
      // One worker thread: the report is the same on any number, and a second one warms the simulator up again.
      '--jobs',
      '1',
    ]);
    expect(run.code).toBe(1);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('request', (request) => requests.push(request.url()));
    await page.goto(pathToFileURL(file).href);
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
  });

  const visibleRows = (): Promise<string[]> =>
    page.locator('#results tbody tr:not(.hidden) td:first-child').allTextContents();

  it('the matrix and the table, in the outcome vocabulary; nothing fetched', async () => {
    expect(await page.title()).toBe('tdxsim run report');
    expect(await page.locator('#matrix tbody tr').count()).toBe(4);
    expect(await page.locator('#matrix tbody td').count()).toBe(8);
    expect(
      await page.locator('#matrix tr:has(th:text-is("r11-past-end")) td.outcome-UNSAFE').textContent(),
    ).toBe('UNSAFE*');
    expect(await page.locator('#matrix tr:has(th:text-is("throwing-vmm")) td.outcome-error').count()).toBe(2);
    const colour = await page.evaluate(
      "getComputedStyle(document.querySelector('#matrix tbody tr td')).backgroundColor",
    );
    expect(colour).toBe('rgb(200, 230, 201)');
    expect(await page.locator('#results tbody tr').count()).toBe(16);
    expect(await page.locator('details.scenario svg.gpa-map').count()).toBe(16);
    expect(requests.every((url) => url.startsWith('file:'))).toBe(true);
  });

  it('the GPA map has a legend and axes, and marks the violating page', async () => {
    const unsafe = page.locator('#s-openvmm_r11-past-end_swiotlb-1g');
    expect(await unsafe.getAttribute('open')).toBe('');
    const legend = await unsafe.locator('figure:has(svg.gpa-map) .legend span').allTextContents();
    expect(legend).toEqual([...BAND_STATES.map((s) => s.name), 'violating page']);
    const ticks = await unsafe.locator('svg.gpa-map text.tick').allTextContents();
    expect(ticks).toEqual([
      '0',
      '512 MiB',
      '1 GiB',
      '1536 MiB',
      '2 GiB',
      'step 0',
      expect.stringMatching(/^step \d+$/),
    ]);
    expect(await unsafe.locator('svg.gpa-map text.axis').allTextContents()).toEqual([
      'conversion step →',
      'guest physical address ↓',
    ]);
    expect(await unsafe.locator('svg.gpa-map g.marked-gpa text').textContent()).toBe(
      'violation at 0x40000000',
    );
    // The page is marked where it lies: GPA 1 GiB of 2 GiB, half way down the 180-pixel plot.
    expect(await unsafe.locator('svg.gpa-map g.marked-gpa line').getAttribute('y1')).toBe('90.0');
    // The shared band the guest believes in is drawn.
    expect(await unsafe.locator('svg.gpa-map path.band-s').count()).toBe(1);
    await unsafe.screenshot({ path: join(shots, 'unsafe-scenario.png') });
    expect(statSync(join(shots, 'unsafe-scenario.png')).size).toBeGreaterThan(10_000);
  });

  it('the timeline has a legend and a time axis, centred on the marked call', async () => {
    const unsafe = page.locator('#s-openvmm_r11-past-end_swiotlb-1g');
    const legend = await unsafe.locator('figure:has(svg.timeline) .legend span').allTextContents();
    expect(legend).toEqual([
      'guest TDCALLs',
      'TD exits, MapGPA replies',
      'VMM SEAMCALLs',
      'RETRY',
      'failed call',
    ]);
    const ticks = await unsafe.locator('svg.timeline text.tick').allTextContents();
    expect(ticks).toHaveLength(3);
    for (const tick of ticks) expect(tick).toMatch(/^[\d.]+ (ns|µs|ms)$/);
    // The marked call is the RETRY whose R11 lies past the request, drawn at the centre of the plot (150 + 330 / 2).
    expect(await unsafe.locator('.marked-call-text code').textContent()).toBe(
      'MapGPA 0x40000000..0x80000000 → RETRY R11=0x800080004000',
    );
    expect(await unsafe.locator('svg.timeline g.marked-call line').getAttribute('x1')).toBe('315.0');
    // A scenario that failed safely is marked at its failure too.
    const stalled = page.locator('#s-linux_never-progresses_swiotlb-1g');
    expect(await stalled.locator('.marked-call-text code').textContent()).toMatch(/RETRY/);
  });

  it('filter by outcome: ok rows hidden at first, shown on request; only the changes; the error rows', async () => {
    expect(await page.locator('#controls input[value="ok"]').isChecked()).toBe(false);
    const initial = await visibleRows();
    expect(initial).toHaveLength(12);
    expect(initial).not.toContain('linux/hyperv-512/swiotlb-1g');
    await page.locator('#controls input[value="ok"]').check();
    expect(await visibleRows()).toHaveLength(16);
    await page.locator('#controls input[value="changes"]').check();
    // Changes: the errors of the user's backend (nothing expected of it).
    expect(await visibleRows()).toEqual([
      'linux/throwing-vmm/swiotlb-1g',
      'linux/throwing-vmm/dma-small',
      'openvmm/throwing-vmm/swiotlb-1g',
      'openvmm/throwing-vmm/dma-small',
    ]);
    expect(await page.locator('details.scenario:not(.hidden)').count()).toBe(4);
    await page.screenshot({ path: join(shots, 'filtered-to-changes.png') });
    await page.locator('#controls input[value="changes"]').uncheck();
    await page.locator('#controls input[value="failed-safely"]').uncheck();
    expect(await page.locator('#results tbody tr:not(.hidden)[data-outcome="failed-safely"]').count()).toBe(
      0,
    );
    expect(await page.locator('#results tbody tr:not(.hidden)[data-outcome="UNSAFE"]').count()).toBe(4);
    await page.locator('#controls input[value="failed-safely"]').check();
  });

  it('search: by scenario, by reason, several words', async () => {
    await page.locator('#search').fill('overclaim');
    expect(await visibleRows()).toEqual([
      'openvmm/r11-past-end/swiotlb-1g',
      'openvmm/r11-past-end/dma-small',
    ]);
    expect(await page.locator('#shown').textContent()).toBe('2 shown');
    await page.locator('#search').fill('throwing dma');
    expect(await visibleRows()).toEqual(['linux/throwing-vmm/dma-small', 'openvmm/throwing-vmm/dma-small']);
    await page.locator('#search').fill('');
    expect(await visibleRows()).toHaveLength(16);
    await page.screenshot({ path: join(shots, 'report.png'), fullPage: true });
    expect(statSync(join(shots, 'report.png')).size).toBeGreaterThan(50_000);
  });
});
