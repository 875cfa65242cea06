// Loads the gateway's dashboard in headless Chromium (Debian's package, driven by
// playwright-core) while a simulated fleet runs, and checks what an operator would look
// at: stations drawn in AQI colours, a chart with data, the health panels filled, the
// Alerts panel with the firing alerts of the rules scripts/browser-test.sh configures
// (ALERT_DEVICE's PM2.5, ALERT_DISTRICT's reporting count) and the map marking that
// station and district, and, on a second page fed made-up /api/alerts answers, the
// panel's empty state and its resolved history. Saves a screenshot. Run by
// scripts/browser-test.sh, which starts the demo.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const url = process.env.DASHBOARD_URL ?? 'http://127.0.0.1:8080/';
const screenshot = process.env.SCREENSHOT ?? 'artifacts/dashboard.png';
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// How long the page may take to show data (the first AQI answer reads 3 h of history).
const WAIT_MS = 90_000;

// The dashboard's alert colour (#ff5a5a): station rings and district outlines.
const ALERT = [255, 90, 90];
// Set by browser-test.sh when its alert rules fire on the fleet it runs; empty when no
// rule can fire (then the panel must show its empty state).
const alertDevice = process.env.ALERT_DEVICE ?? '';
const alertDistrict = process.env.ALERT_DISTRICT ?? '';

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

  // Alerts: the panel lists the firing alerts, with value and threshold, and the map
  // marks their station (a ring) and district (an outline) in the alert colour.
  await page.waitForFunction(() => document.getElementById('alerts').dataset.loaded === '1', null, { timeout: WAIT_MS });
  if (alertDevice) {
    await page.waitForFunction(() => {
      const o = document.getElementById('overview').dataset;
      return Number(o.alertStations) > 0 && Number(o.alertDistricts) > 0;
    }, null, { timeout: WAIT_MS });
    const alerts = await page.evaluate((alert) => {
      const rows = [...document.querySelectorAll('#alerts-active tr[data-state]')]
        .map((tr) => ({ state: tr.dataset.state, cells: [...tr.cells].map((td) => td.textContent.trim()) }));
      const o = document.getElementById('overview').dataset;
      const c = document.getElementById('map');
      const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let marked = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i] - alert[0]) < 4 && Math.abs(data[i + 1] - alert[1]) < 4
          && Math.abs(data[i + 2] - alert[2]) < 4 && data[i + 3] === 255) marked += 1;
      }
      return {
        firing: Number(document.getElementById('alerts').dataset.firing),
        count: document.getElementById('alerts-count').textContent,
        rows,
        stations: Number(o.alertStations),
        districts: Number(o.alertDistricts),
        marked,
      };
    }, ALERT);
    console.log(`alerts: ${alerts.count}; ${alerts.rows.length} active rows; map marks ${alerts.stations} station(s), ${alerts.districts} district(s), ${alerts.marked} pixels in the alert colour`);
    // Columns: state, rule, where, value, threshold, summary, since.
    const station = alerts.rows.find((r) => r.cells[1].startsWith('browser-test-station'));
    assert.ok(station, 'the panel does not list the station alert');
    assert.equal(station.state, 'firing');
    assert.match(station.cells[2], new RegExp(alertDevice));
    assert.match(station.cells[3], /^\d/, 'the station alert shows no value');
    assert.equal(station.cells[4], '> 0', 'the station alert shows no threshold');
    assert.match(station.cells[6], /ago/, 'the station alert shows no time');
    const district = alerts.rows.find((r) => r.cells[1].startsWith('browser-test-district'));
    assert.ok(district, 'the panel does not list the district alert');
    assert.equal(district.state, 'firing');
    assert.match(district.cells[2], new RegExp(alertDistrict));
    assert.equal(district.cells[4], '< 1000');
    assert.ok(alerts.firing >= 2, 'fewer than two firing alerts counted');
    // Firing rows come first.
    const firstOther = alerts.rows.findIndex((r) => r.state !== 'firing');
    assert.ok(firstOther < 0 || alerts.rows.slice(firstOther).every((r) => r.state !== 'firing'), 'a firing alert is listed after a pending one');
    assert.equal(alerts.stations, 1, `only ${alertDevice} should be marked`);
    assert.equal(alerts.districts, 1, `only ${alertDistrict} should be outlined`);
    assert.ok(alerts.marked > 20, 'no ring or outline in the alert colour on the map');
  } else {
    assert.match(await page.locator('#alerts-active').innerText(), /no alert firing or pending/);
    console.log('alerts: no rule fires on this data; the panel shows its empty state');
  }

  // Live: the page refreshes on its own.
  const before = await page.locator('#live').innerText();
  await page.waitForFunction(() => /updated \d+ s ago/.test(document.getElementById('live').textContent), null, { timeout: WAIT_MS });
  console.log(`live indicator: "${before}" -> "${await page.locator('#live').innerText()}"`);

  await page.screenshot({ path: screenshot, fullPage: true });
  assert.deepEqual(foreign, [], 'the page fetched something from outside the gateway');
  assert.deepEqual(errors, [], 'the page logged errors');

  // The Alerts panel's other states, from made-up answers: nothing active (empty state,
  // no marks on the map) and a resolved alert in the history with its duration.
  const other = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  const now = Date.now();
  const resolved = {
    id: 1, rule: 'made-up-rule', state: 'resolved',
    labels: { alertname: 'made-up-rule', severity: 'warning', device: 'aq-9999', district: 'ba-dinh', kind: 'airquality' },
    annotations: { summary: 'pm25 of aq-9999 is 160 (above 150)', threshold: '> 150' },
    value: 140.5, started_ms: now - 600_000, fired_ms: now - 540_000, resolved_ms: now - 300_000,
    updated_ms: now - 300_000, last_notified_ms: now - 300_000, notifications: 2, notify_failures: 0,
    last_error: null, fingerprint: '0000000000000000',
  };
  await other.route((u) => u.pathname === '/api/alerts', (route) => {
    const state = new URL(route.request().url()).searchParams.get('state');
    route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ alerts: state === 'resolved' ? [resolved] : [] }) });
  });
  await other.goto(url, { waitUntil: 'load' });
  await other.waitForFunction(() => document.getElementById('alerts').dataset.loaded === '1'
    && Number(document.getElementById('overview').dataset.stations) > 0, null, { timeout: WAIT_MS });
  assert.match(await other.locator('#alerts-active').innerText(), /no alert firing or pending/);
  assert.match(await other.locator('#alerts-count').innerText(), /0 firing/);
  const history = await other.locator('#alerts-history tr[data-state="resolved"]').allInnerTexts();
  console.log(`alerts (made up): empty state shown; history: ${history.map((h) => h.replace(/\s+/g, ' ')).join(' | ')}`);
  assert.equal(history.length, 1, 'the resolved alert is not in the history');
  assert.match(history[0], /made-up-rule/);
  assert.match(history[0], /4 min/, 'the history does not show how long the alert lasted');
  const marks = await other.evaluate(() => document.getElementById('overview').dataset);
  assert.equal(Number(marks.alertStations) + Number(marks.alertDistricts), 0, 'the map marks alerts that are not firing');
  await other.close();

  // The public street-display page of the district with alerts (Hoan Kiem by default): a
  // large panel in its AQI colour with the category in Vietnamese and English, from
  // /public/aqi, and nothing fetched from outside the gateway.
  const display = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  const outside = [];
  display.on('request', (r) => { if (!r.url().startsWith(new URL(url).origin)) outside.push(r.url()); });
  const district = alertDistrict || 'hoan-kiem';
  await display.goto(new URL(`/public/${district}`, url).href, { waitUntil: 'load' });
  // The panel fades into its colour (a 0.5 s transition): wait for the value and the colour.
  await display.waitForFunction(() => document.getElementById('value').textContent.trim() !== '–'
    && getComputedStyle(document.getElementById('panel')).backgroundColor !== 'rgb(136, 136, 136)',
    null, { timeout: WAIT_MS });
  await display.waitForTimeout(600);
  const shown = await display.evaluate(() => ({
    value: Number(document.getElementById('value').textContent),
    vi: document.getElementById('cat-vi').textContent,
    en: document.getElementById('cat-en').textContent,
    background: getComputedStyle(document.getElementById('panel')).backgroundColor,
  }));
  console.log(`public page: ${district} ${shown.value} "${shown.vi}" / "${shown.en}" on ${shown.background}`);
  assert.ok(shown.value >= 0 && shown.value <= 500, 'the public page shows no AQI value');
  assert.ok(/^(Tốt|Trung bình|Kém|Xấu|Rất xấu|Nguy hại)$/.test(shown.vi), `not a VN_AQI category: ${shown.vi}`);
  assert.ok(shown.en.length > 0, 'no English category');
  assert.notEqual(shown.background, 'rgb(136, 136, 136)', 'the panel is not in an AQI colour');
  assert.deepEqual(outside, [], 'the public page fetched something from outside the gateway');
  await display.screenshot({ path: screenshot.replace(/\.png$/, '-public.png') });
  await display.close();
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
