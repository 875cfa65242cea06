// Loads the gateway's dashboard in headless Chromium (Debian's package, driven by
// playwright-core) while a simulated fleet runs, and checks what an operator would look
// at: stations drawn in AQI colours, a chart with data, the health panels filled.
// Saves a screenshot. Run by scripts/browser-test.sh, which starts the demo.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const url = process.env.DASHBOARD_URL ?? 'http://127.0.0.1:8080/';
const screenshot = process.env.SCREENSHOT ?? 'artifacts/dashboard.png';
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// How long the page may take to show data (the first AQI answer reads 3 h of history).
const WAIT_MS = 90_000;

// The six bands' colours, as published by Decision 1459 and the EPA.
const BANDS = [[0, 228, 0], [255, 255, 0], [255, 126, 0], [255, 0, 0], [143, 63, 151], [126, 0, 35]];

const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });
  // Nothing may come from outside the gateway: the page must work offline.
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(new URL(url).origin)) foreign.push(r.url()); });

  await page.goto(url, { waitUntil: 'load' });

  // The overview: stations drawn, some in an AQI colour.
  await page.waitForFunction(() => Number(document.getElementById('overview').dataset.coloured) > 0, null, { timeout: WAIT_MS });
  const overview = await page.evaluate((bands) => {
    const el = document.getElementById('overview');
    const c = document.getElementById('map');
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < data.length; i += 4) {
      bands.forEach(([r, g, b], k) => {
        if (data[i] === r && data[i + 1] === g && data[i + 2] === b && data[i + 3] === 255) seen.add(k);
      });
    }
    return { stations: Number(el.dataset.stations), coloured: Number(el.dataset.coloured), bands: [...seen] };
  }, BANDS);
  console.log(`overview: ${overview.stations} stations, ${overview.coloured} with an index, band colours on the canvas: ${overview.bands.join(',')}`);
  assert.ok(overview.stations > 0, 'no station in the overview');
  assert.ok(overview.bands.length > 0, 'no AQI band colour painted on the overview canvas');

  // The chart: uPlot drew a series with points.
  await page.waitForFunction(() => Number(document.getElementById('chart').dataset.points) > 0, null, { timeout: WAIT_MS });
  const chart = await page.evaluate(() => {
    const el = document.getElementById('chart');
    const c = el.querySelector('canvas');
    if (!c) return { points: Number(el.dataset.points), stroked: 0 };
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let stroked = 0;
    // The series' stroke, #4ea1ff (anti-aliased edges aside).
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - 78) < 8 && Math.abs(data[i + 1] - 161) < 8 && Math.abs(data[i + 2] - 255) < 8 && data[i + 3] > 200) stroked += 1;
    }
    return { points: Number(el.dataset.points), series: el.dataset.series, stroked };
  });
  console.log(`chart: ${chart.series}, ${chart.points} points, ${chart.stroked} stroke pixels`);
  assert.ok(chart.stroked > 50, 'the chart canvas shows no line');

  // Two devices overlaid: the API answers both series and the chart shows both.
  const two = await page.evaluate(() => {
    const ids = [...document.querySelectorAll('#devices option')].map((o) => o.value).filter((d) => d.startsWith('aq-'));
    return ids.slice(0, 2);
  });
  if (two.length === 2) {
    await page.fill('#device', two.join(','));
    await page.dispatchEvent('#device', 'change');
    await page.waitForFunction((want) => document.getElementById('chart').dataset.series === want,
      two.map((d) => `${d}:pm25`).join(','), { timeout: WAIT_MS });
    const legend = await page.locator('#chart .u-legend .u-series').count();
    console.log(`overlay: ${two.join(' + ')}, ${legend - 1} series in the legend`);
    assert.equal(legend, 3, 'the overlay chart should list time + 2 series');
  }

  // Health panels filled from the API.
  await page.waitForFunction(() => document.querySelectorAll('#tiles .tile').length >= 5, null, { timeout: WAIT_MS });
  await page.waitForFunction(() => document.querySelector('#districts table tr:nth-child(2)') !== null, null, { timeout: WAIT_MS });
  const tiles = await page.locator('#tiles').innerText();
  assert.match(tiles, /readings \/ s/);
  assert.ok(await page.locator('#health table, #health .ok').count() > 0, 'no device-health table');

  // Live: the page refreshes on its own.
  const before = await page.locator('#live').innerText();
  await page.waitForFunction(() => /updated \d+ s ago/.test(document.getElementById('live').textContent), null, { timeout: WAIT_MS });
  console.log(`live indicator: "${before}" -> "${await page.locator('#live').innerText()}"`);

  await page.screenshot({ path: screenshot, fullPage: true });
  assert.deepEqual(foreign, [], 'the page fetched something from outside the gateway');
  assert.deepEqual(errors, [], 'the page logged errors');
  console.log('browser test: ok');
} catch (e) {
  failed = true;
  console.error(`browser test: FAILED: ${e.message}`);
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages[0]) await pages[0].screenshot({ path: screenshot, fullPage: true });
  } catch { /* the screenshot is a bonus */ }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
