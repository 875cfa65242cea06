// The operations dashboard: a city overview coloured by AQI, charts of chosen series,
// device health, dead letters, ingest rate and lag. Reads the gateway's query API
// (/api/*) and refreshes itself; everything it needs is bundled by Vite (no CDN).
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';

// Refresh periods (ms). The AQI answer is cached by the gateway for 30 s, so polling it
// faster only re-reads the cache.
const FAST = 5000;
const SLOW = 15000;
const CHART = 10000;
const NO_DATA = '#55606c';
const BANDS = [
  ['good', '0–50', '#00e400'],
  ['moderate', '51–100', '#ffff00'],
  ['poor', '101–150', '#ff7e00'],
  ['bad', '151–200', '#ff0000'],
  ['very_bad', '201–300', '#8f3f97'],
  ['hazardous', '301–500', '#7e0023'],
];
// The metric the AQI overview is computed from: the chart starts on it, and a click on a
// station charts it.
const AQI_METRIC = 'pm25';
// How a few SenML unit symbols read best on screen; others are shown as they are.
const UNIT_LABELS = { 'ug/m3': 'µg/m³', Cel: '°C', '%RH': '% RH', count: '' };

const $ = (id) => document.getElementById(id);
const state = {
  stations: [], devices: [], selected: null, plot: null, lastOk: 0,
  // Firing alerts by the device and by the district (district-scoped rules) they name.
  alertDevices: new Map(), alertDistricts: new Map(),
};
// How the map marks alerts: a ring around a station, an outline around a district.
const ALERT = '#ff5a5a';
// Resolved alerts listed under the active ones.
const HISTORY_ROWS = 30;
// The gateway's metric catalog (GET /api/catalog): every metric name, unit, description
// and range. Loaded once at start; nothing here keeps its own list of metrics.
const catalog = { metrics: [], kinds: [], byName: new Map() };

async function api(path) {
  const resp = await fetch(path, { headers: { accept: 'application/json' } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${body.error ?? ''}`);
  return body;
}

function unitLabel(name) {
  const u = catalog.byName.get(name)?.unit;
  if (u == null) return '';
  return UNIT_LABELS[u] ?? u;
}

// Metric names in catalog order (names the catalog does not know go last).
function inCatalogOrder(names) {
  const pos = (n) => catalog.metrics.findIndex((m) => m.name === n);
  const rank = (n) => (pos(n) < 0 ? Infinity : pos(n));
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

async function loadCatalog() {
  const r = await api('/api/catalog');
  catalog.metrics = r.metrics;
  catalog.kinds = r.kinds;
  catalog.byName = new Map(r.metrics.map((m) => [m.name, m]));
}

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function ago(ms) {
  if (ms == null) return 'never';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 90) return `${s.toFixed(0)} s ago`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min ago`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

// Runs `fn` now and every `period` ms, never two at once, skipping hidden tabs.
function every(period, fn) {
  const tick = async () => {
    if (!document.hidden) {
      try {
        await fn();
        state.lastOk = Date.now();
      } catch (e) {
        console.warn(e);
      }
    }
    setTimeout(tick, period);
  };
  tick();
}

// ---------------------------------------------------------------- tiles
function tiles(s) {
  const t = (k, v, warn) => `<div class="tile${warn ? ' warn' : ''}"><div class="v">${esc(v)}</div><div class="k">${esc(k)}</div></div>`;
  const dl = s.dead_letters.reduce((a, r) => a + r.count, 0);
  $('tiles').innerHTML = [
    t('readings / s (last minute)', s.ingest_rate_per_s.toFixed(1)),
    t('devices online', `${s.devices_online} / ${s.devices}`),
    t('devices stale', s.devices_stale, s.devices_stale > 0),
    t('store lag', `${s.store_lag_s.toFixed(1)} s`, s.store_lag_s > 60),
    t('outbox', `${s.outbox_entries} (${s.outbox_readings} readings)`, s.outbox_entries > 1000),
    t('message log not applied', s.log_backlog_bytes == null ? '—' : `${(s.log_backlog_bytes / 1048576).toFixed(1)} MiB (${s.log_apply_lag_records} msgs)`, s.log_backlog_bytes > 64 * 1048576),
    t('newest message', s.newest_message_age_s == null ? '—' : `${s.newest_message_age_s.toFixed(1)} s ago`, s.newest_message_age_s > 120),
    t('dead letters (last hour / held)', `${s.dead_letters_last_hour} / ${dl}`, s.dead_letters_last_hour > 0),
  ].join('');
  const max = Math.max(1, ...s.dead_letters.map((r) => r.count));
  $('deadletters').innerHTML = s.dead_letters.length === 0
    ? '<p class="ok">none</p>'
    : `<table><tr><th>reason</th><th class="num">count</th><th style="width:50%"></th></tr>${s.dead_letters
      .map((r) => `<tr><td>${esc(r.reason)}</td><td class="num">${r.count}</td><td><div class="bar" style="width:${(100 * r.count) / max}%"></div></td></tr>`)
      .join('')}</table>`;
}

// ---------------------------------------------------------------- overview
function legend() {
  $('legend').innerHTML = BANDS.map(([k, range, c]) => `<span><i style="background:${c}"></i>${range} ${k.replace('_', ' ')}</span>`).join('')
    + `<span><i style="background:${NO_DATA}"></i>no data</span>`
    + `<span><i class="ring" style="border-color:${ALERT}"></i>station with a firing alert</span>`
    + `<span><i class="outline" style="border-color:${ALERT}"></i>district with a firing alert</span>`;
}

// Screen positions of the stations: by lat/lon when most have coordinates, else a grid
// of districts with the stations inside.
function layout(stations, w, h) {
  const pad = 18;
  const geo = stations.filter((s) => s.lat != null && s.lon != null);
  if (geo.length >= stations.length / 2 && geo.length > 0) {
    let [la0, la1, lo0, lo1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const s of geo) {
      la0 = Math.min(la0, s.lat); la1 = Math.max(la1, s.lat);
      lo0 = Math.min(lo0, s.lon); lo1 = Math.max(lo1, s.lon);
    }
    const k = Math.cos(((la0 + la1) / 2) * Math.PI / 180);
    const spanX = Math.max((lo1 - lo0) * k, 1e-4);
    const spanY = Math.max(la1 - la0, 1e-4);
    const scale = Math.min((w - 2 * pad) / spanX, (h - 2 * pad) / spanY);
    const ox = (w - spanX * scale) / 2;
    const oy = (h - spanY * scale) / 2;
    return stations.map((s) => (s.lat == null || s.lon == null ? null : [
      ox + (s.lon - lo0) * k * scale,
      h - (oy + (s.lat - la0) * scale),
    ]));
  }
  const districts = [...new Set(stations.map((s) => s.district ?? '?'))].sort();
  const cols = Math.ceil(Math.sqrt(districts.length * w / h));
  const rows = Math.ceil(districts.length / cols);
  const cw = w / cols;
  const ch = h / rows;
  const slots = new Map();
  return stations.map((s) => {
    const d = districts.indexOf(s.district ?? '?');
    const n = slots.get(d) ?? 0;
    slots.set(d, n + 1);
    const per = Math.max(1, Math.floor((cw - 20) / 12));
    return [(d % cols) * cw + 10 + (n % per) * 12 + 6, Math.floor(d / cols) * ch + 24 + Math.floor(n / per) * 12];
  });
}

function drawOverview() {
  const canvas = $('map');
  const box = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(box.width * dpr);
  canvas.height = Math.round(box.height * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, box.width, box.height);
  const scale = $('scale').value;
  const stations = state.stations;
  const pos = layout(stations, box.width, box.height);
  const r = stations.length > 400 ? 4 : stations.length > 100 ? 6 : 8;
  // District names at the centre of their stations.
  const centres = new Map();
  stations.forEach((s, i) => {
    if (!pos[i]) return;
    const c = centres.get(s.district) ?? [0, 0, 0];
    centres.set(s.district, [c[0] + pos[i][0], c[1] + pos[i][1], c[2] + 1]);
  });
  const alertDistricts = drawDistrictAlerts(ctx, stations, pos, r);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#8a96a3';
  ctx.textAlign = 'center';
  // Skip a name that would overprint one already drawn (districts interleave on a map).
  const drawn = [];
  for (const [d, [x, y, n]] of centres) {
    const [cx, cy] = [x / n, y / n - r - 6];
    if (drawn.some(([px, py]) => Math.abs(px - cx) < 70 && Math.abs(py - cy) < 14)) continue;
    drawn.push([cx, cy]);
    ctx.fillStyle = state.alertDistricts.has(d) ? ALERT : '#8a96a3';
    ctx.fillText(d ?? '?', cx, cy);
  }
  let coloured = 0;
  let alertStations = 0;
  state.hit = [];
  stations.forEach((s, i) => {
    if (!pos[i]) return;
    const v = s[scale];
    const colour = v ? v.colour : NO_DATA;
    if (v) coloured += 1;
    ctx.beginPath();
    ctx.arc(pos[i][0], pos[i][1], r, 0, 2 * Math.PI);
    ctx.fillStyle = colour;
    ctx.fill();
    if (state.selected === s.device) {
      ctx.lineWidth = 2;
      ctx.strokeStyle = '#ffffff';
      ctx.stroke();
    }
    if (state.alertDevices.has(s.device)) {
      alertStations += 1;
      ctx.beginPath();
      ctx.arc(pos[i][0], pos[i][1], r + 4, 0, 2 * Math.PI);
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = ALERT;
      ctx.stroke();
    }
    state.hit.push([pos[i][0], pos[i][1], s]);
  });
  state.hitR = r + 3;
  const el = $('overview');
  el.dataset.stations = String(stations.length);
  el.dataset.coloured = String(coloured);
  el.dataset.alertStations = String(alertStations);
  el.dataset.alertDistricts = String(alertDistricts);
}

// Convex hull of points (Andrew's monotone chain), counter-clockwise.
function hull(points) {
  const p = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const half = (pts) => {
    const out = [];
    for (const q of pts) {
      while (out.length >= 2 && cross(out[out.length - 2], out[out.length - 1], q) <= 0) out.pop();
      out.push(q);
    }
    out.pop();
    return out;
  };
  return [...half(p), ...half([...p].reverse())];
}

// Outlines the districts that have a district-scoped firing alert: the hull of their
// stations widened by a margin (a circle for one or two stations), tinted and stroked
// in the alert colour, under the station dots. Returns how many it drew.
function drawDistrictAlerts(ctx, stations, pos, r) {
  let n = 0;
  const pad = r + 9;
  for (const district of state.alertDistricts.keys()) {
    const pts = stations.map((s, i) => (s.district === district ? pos[i] : null)).filter(Boolean);
    if (pts.length === 0) continue;
    n += 1;
    const cx = pts.reduce((a, q) => a + q[0], 0) / pts.length;
    const cy = pts.reduce((a, q) => a + q[1], 0) / pts.length;
    const h = hull(pts);
    ctx.beginPath();
    if (h.length < 3) {
      const far = Math.max(...pts.map(([x, y]) => Math.hypot(x - cx, y - cy)));
      ctx.arc(cx, cy, far + pad, 0, 2 * Math.PI);
    } else {
      h.forEach(([x, y], k) => {
        const d = Math.hypot(x - cx, y - cy) || 1;
        const [px, py] = [x + ((x - cx) / d) * pad, y + ((y - cy) / d) * pad];
        if (k === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      });
      ctx.closePath();
    }
    ctx.fillStyle = `${ALERT}22`;
    ctx.fill();
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = ALERT;
    ctx.stroke();
    ctx.setLineDash([]);
  }
  return n;
}

function stationAt(ev) {
  const box = $('map').getBoundingClientRect();
  const x = ev.clientX - box.left;
  const y = ev.clientY - box.top;
  let best = null;
  let bestD = state.hitR * state.hitR;
  for (const [px, py, s] of state.hit ?? []) {
    const d = (px - x) ** 2 + (py - y) ** 2;
    if (d <= bestD) { best = s; bestD = d; }
  }
  return [best, x, y];
}

function fmtIndex(v) {
  return v ? `${v.value} ${v.category.replace('_', ' ')} (${v.dominant})` : '—';
}

function wireOverview() {
  const canvas = $('map');
  canvas.addEventListener('mousemove', (ev) => {
    const [s, x, y] = stationAt(ev);
    const tip = $('tip');
    if (!s) { tip.hidden = true; return; }
    tip.hidden = false;
    tip.style.left = `${x + 12}px`;
    tip.style.top = `${y + 12}px`;
    tip.innerHTML = `<b>${esc(s.device)}</b> · ${esc(s.district)}<br>VN_AQI hourly ${esc(fmtIndex(s.vn_aqi_hourly))}<br>VN_AQI daily ${esc(fmtIndex(s.vn_aqi_daily))}<br>US AQI ${esc(fmtIndex(s.us_aqi_nowcast))}<br>PM2.5 NowCast ${s.pm25_nowcast?.toFixed(1) ?? '—'} ${esc(unitLabel(AQI_METRIC))}${[
      ...(state.alertDevices.get(s.device) ?? []), ...(state.alertDistricts.get(s.district) ?? []),
    ].map((a) => `<br><span class="bad">firing: ${esc(a.rule)} · ${esc(a.annotations.summary ?? '')}</span>`).join('')}`;
  });
  canvas.addEventListener('mouseleave', () => { $('tip').hidden = true; });
  canvas.addEventListener('click', (ev) => {
    const [s] = stationAt(ev);
    if (!s) return;
    state.selected = s.device;
    // Shift-click adds the station to the chart instead of replacing it.
    const shown = $('device').value.split(',').map((d) => d.trim()).filter(Boolean);
    $('device').value = ev.shiftKey && !shown.includes(s.device) ? [...shown, s.device].join(',') : s.device;
    setMetricOptions(catalog.metrics.map((m) => m.name), AQI_METRIC);
    drawOverview();
    refreshChart();
  });
  $('scale').addEventListener('change', drawOverview);
  window.addEventListener('resize', () => { drawOverview(); resizeChart(); });
}

async function refreshAqi() {
  const r = await api('/api/aqi');
  state.stations = r.stations;
  if (!state.selected && r.stations.length > 0) {
    // Start with a station that has data, so the chart shows something at once.
    const first = r.stations.find((s) => s.vn_aqi_hourly) ?? r.stations[0];
    state.selected = first.device;
    if (!$('device').value) $('device').value = first.device;
  }
  drawOverview();
}

// ---------------------------------------------------------------- chart
function resizeChart() {
  if (state.plot) state.plot.setSize({ width: $('chart').clientWidth, height: 340 });
}

// Line colours of the series, in order (the first is the one the browser test looks for).
const PALETTE = ['#4ea1ff', '#ff9f43', '#2ed573', '#ff6b81', '#a29bfe', '#feca57', '#48dbfb', '#c8d6e5'];

async function refreshChart() {
  // Several devices, comma-separated, overlay the same metric.
  const devices = $('device').value.split(',').map((d) => d.trim()).filter(Boolean).slice(0, PALETTE.length);
  const metric = $('metric').value;
  const el = $('chart');
  if (devices.length === 0 || !metric) return;
  const win = $('window').value;
  const agg = $('agg').value;
  const pairs = devices.map((d) => `${d}:${metric}`).join(',');
  const r = await api(`/api/series?series=${encodeURIComponent(pairs)}&from=-${win}&to=now&agg=${agg}`);
  const step = r.step_ms;
  // uPlot wants one x array (seconds) shared by all series: the union of the bucket
  // starts, plus a null point where no series has a bucket, so that gaps show as gaps.
  const times = [...new Set(r.series.flatMap((s) => s.t))].sort((a, b) => a - b);
  const xs = [];
  for (let i = 0; i < times.length; i++) {
    if (i > 0 && times[i] - times[i - 1] > step * 1.5) xs.push(times[i - 1] + step);
    xs.push(times[i]);
  }
  const columns = r.series.map((s) => {
    const byT = new Map(s.t.map((t, i) => [t, s.v[i]]));
    return xs.map((t) => byT.get(t) ?? null);
  });
  const points = r.series.reduce((n, s) => n + s.t.length, 0);
  el.dataset.points = String(points);
  el.dataset.series = pairs;
  const u = unitLabel(metric) || r.series[0]?.unit;
  const unit = u ? ` (${u})` : '';
  const key = `${pairs}|${agg}|${step}`;
  if (points === 0) {
    if (state.plot) { state.plot.destroy(); state.plot = null; }
    el.innerHTML = `<div class="empty">no data for ${esc(pairs)} in the last ${esc(win)}</div>`;
    return;
  }
  const data = [xs.map((t) => t / 1000), ...columns];
  if (state.plot && state.plotKey === key) {
    state.plot.setData(data);
    return;
  }
  if (state.plot) state.plot.destroy();
  el.innerHTML = '';
  state.plotKey = key;
  state.plot = new uPlot({
    width: el.clientWidth,
    height: 340,
    scales: { x: { time: true } },
    axes: [
      { stroke: '#8a96a3', grid: { stroke: '#2a3440' }, ticks: { stroke: '#2a3440' } },
      { stroke: '#8a96a3', grid: { stroke: '#2a3440' }, ticks: { stroke: '#2a3440' } },
    ],
    series: [{}, ...r.series.map((s, i) => ({
      label: `${s.device} ${metric}${unit} ${agg}/${step / 1000}s`,
      stroke: PALETTE[i],
      width: 1.5,
      fill: i === 0 && r.series.length === 1 ? `${PALETTE[0]}22` : undefined,
      spanGaps: false,
    }))],
  }, data, el);
}

async function metricsOf(device) {
  const d = state.devices.find((x) => x.device === device);
  if (!d || !d.district) return null;
  const r = await api(`/api/latest?detail=true&district=${encodeURIComponent(d.district)}&max_age=7d`);
  const mine = (r.devices ?? []).find((x) => x.device === device);
  return mine ? inCatalogOrder(Object.keys(mine.values)) : null;
}

// Fills the metric list with `names` (labelled with their catalog unit and described on
// hover), keeping `keep` selected when it is one of them.
function setMetricOptions(names, keep) {
  const sel = $('metric');
  sel.innerHTML = names.map((n) => {
    const m = catalog.byName.get(n);
    const u = unitLabel(n);
    return `<option value="${esc(n)}" title="${esc(m?.description)}">${esc(n)}${u ? ` (${esc(u)})` : ''}</option>`;
  }).join('');
  sel.value = names.includes(keep) ? keep : (names[0] ?? '');
}

async function fillMetrics() {
  const device = $('device').value.split(',')[0].trim();
  const metrics = (await metricsOf(device).catch(() => null)) ?? catalog.metrics.map((m) => m.name);
  setMetricOptions(metrics, $('metric').value || AQI_METRIC);
}

// Loads the catalog (retrying until the gateway answers), then offers its metrics.
async function catalogMetrics() {
  for (;;) {
    try {
      await loadCatalog();
      break;
    } catch (e) {
      console.warn(e);
      await new Promise((done) => { setTimeout(done, 2000); });
    }
  }
  setMetricOptions(catalog.metrics.map((m) => m.name), $('metric').value || AQI_METRIC);
}

function wireChart() {
  $('device').addEventListener('change', async () => {
    state.selected = $('device').value.split(',')[0].trim();
    await fillMetrics();
    drawOverview();
    refreshChart();
  });
  for (const id of ['metric', 'window', 'agg']) $(id).addEventListener('change', () => refreshChart());
}

// ---------------------------------------------------------------- devices
function healthTable() {
  const only = $('problems').checked;
  const rows = state.devices.filter((d) => !only || d.status !== 'online' || d.stale || d.gaps > 0);
  // Worst first: offline, then stale, then the most gaps.
  rows.sort((a, b) => (b.status !== 'online') - (a.status !== 'online') || b.stale - a.stale || b.gaps - a.gaps || a.device.localeCompare(b.device));
  const shown = rows.slice(0, 300);
  $('health').innerHTML = `<table><tr><th>device</th><th>kind</th><th>district</th><th>status</th><th>last seen</th><th>firmware</th><th class="num">gaps</th><th class="num">duplicates</th><th class="num">dropped</th><th>stale</th></tr>${shown
    .map((d) => `<tr><td>${esc(d.device)}</td><td>${esc(d.kind)}</td><td>${esc(d.district)}</td><td class="${d.status === 'online' ? 'ok' : 'bad'}">${esc(d.status)}</td><td>${ago(d.last_seen_ms)}</td><td>${esc(d.firmware)}</td><td class="num${d.gaps > 0 ? ' warn' : ''}">${d.gaps}</td><td class="num">${d.duplicates}</td><td class="num${d.dropped_readings > 0 ? ' warn' : ''}">${d.dropped_readings}</td><td class="${d.stale ? 'warn' : ''}">${d.stale ? `stale (&gt;${d.stale_after_s}s)` : ''}</td></tr>`)
    .join('')}</table>${rows.length > shown.length ? `<p class="hint">${rows.length - shown.length} more not shown</p>` : ''}${rows.length === 0 ? '<p class="ok">every device online, fresh and without gaps</p>' : ''}`;
}

async function refreshDevices() {
  const r = await api('/api/devices');
  state.devices = r.devices;
  $('devices').innerHTML = r.devices.map((d) => `<option value="${esc(d.device)}">`).join('');
  healthTable();
}

async function refreshDistricts() {
  const r = await api('/api/latest');
  // Per district and kind, the mean of each gauge its devices report, in catalog order
  // (a mean of a counter means nothing).
  const values = (g) => inCatalogOrder(g.metrics.map((x) => x.metric))
    .filter((n) => catalog.byName.get(n)?.kind === 'gauge')
    .map((n) => {
      const x = g.metrics.find((y) => y.metric === n);
      const u = unitLabel(n);
      return `<span class="mv" title="${esc(catalog.byName.get(n)?.description)}">${esc(n)} <b>${x.mean.toFixed(1)}</b>${u ? ` ${esc(u)}` : ''}</span>`;
    })
    .join(' ');
  $('districts').innerHTML = `<table><tr><th>district</th><th>kind</th><th class="num">reporting</th><th>mean of the latest values</th></tr>${r.groups
    .map((g) => `<tr><td>${esc(g.district)}</td><td>${esc(g.kind)}</td><td class="num">${g.reporting} / ${g.devices}</td><td class="values">${values(g)}</td></tr>`)
    .join('')}</table>`;
}

// ---------------------------------------------------------------- alerts
function fmtValue(v) {
  if (v == null) return '—';
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 2 : 1);
}

// A wall-clock time: hh:mm:ss today, else with the date.
function clock(ms) {
  if (ms == null) return '—';
  const d = new Date(ms);
  const pad = (x) => String(x).padStart(2, '0');
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return d.toDateString() === new Date().toDateString() ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

function duration(ms) {
  const s = Math.max(0, ms / 1000);
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

// Where an alert is: its device and district, or its district, or its pipeline signal.
function where(a) {
  const l = a.labels;
  const parts = [];
  if (l.device) parts.push(`<b>${esc(l.device)}</b>`);
  if (l.district) parts.push(esc(l.district));
  if (l.kind && !l.device) parts.push(esc(l.kind));
  if (l.signal) parts.push(`pipeline: ${esc(l.signal)}`);
  return parts.join(' · ') || '—';
}

// Critical first, then warning, info and any other severity.
function severityRank(a) {
  const i = ['critical', 'warning', 'info'].indexOf(a.labels.severity);
  return i < 0 ? 3 : i;
}

function alertRow(a, history) {
  const sev = a.labels.severity ?? '';
  const summary = a.annotations.summary ?? '';
  const desc = a.annotations.description;
  const since = a.fired_ms ?? a.started_ms;
  const cells = [
    `<td class="${a.state === 'firing' ? 'bad' : a.state === 'pending' ? 'warn' : 'ok'}">${esc(a.state)}</td>`,
    `<td><b>${esc(a.rule)}</b>${sev ? ` <span class="sev sev-${esc(sev)}">${esc(sev)}</span>` : ''}</td>`,
    `<td>${where(a)}</td>`,
    `<td class="num">${esc(fmtValue(a.value))}</td>`,
    `<td>${esc(a.annotations.threshold ?? '—')}</td>`,
    `<td class="values" title="${esc(desc)}">${esc(summary)}${desc ? ` <span class="hint">${esc(desc)}</span>` : ''}</td>`,
  ];
  if (history) {
    cells.push(`<td>${clock(since)}</td><td>${clock(a.resolved_ms)}</td><td class="num">${a.resolved_ms == null ? '—' : duration(a.resolved_ms - since)}</td>`);
  } else {
    cells.push(`<td title="${a.fired_ms == null ? 'condition holding, not yet for its for_s' : `condition since ${esc(clock(a.started_ms))}`}">${clock(since)} <span class="hint">(${ago(since)})</span></td>`);
  }
  return `<tr data-state="${esc(a.state)}">${cells.join('')}</tr>`;
}

async function refreshAlerts() {
  const [active, resolved] = await Promise.all([
    api('/api/alerts?state=active&limit=1000'),
    api(`/api/alerts?state=resolved&limit=${HISTORY_ROWS}`),
  ]);
  // Firing first, then pending; within each the most severe, then the newest first.
  const firstFiring = (a) => (a.state === 'firing' ? 0 : 1);
  const rows = [...active.alerts].sort((a, b) => firstFiring(a) - firstFiring(b)
    || severityRank(a) - severityRank(b)
    || (b.fired_ms ?? b.started_ms) - (a.fired_ms ?? a.started_ms));
  const firing = rows.filter((a) => a.state === 'firing');
  const head = '<tr><th>state</th><th>rule</th><th>where</th><th class="num">value</th><th>threshold</th><th>summary</th>';
  $('alerts-active').innerHTML = rows.length === 0
    ? '<p class="ok">no alert firing or pending</p>'
    : `<div class="scroll short"><table>${head}<th>since</th></tr>${rows.map((a) => alertRow(a, false)).join('')}</table></div>`;
  $('alerts-history').innerHTML = resolved.alerts.length === 0
    ? '<p class="hint">no resolved alert yet</p>'
    : `<table>${head}<th>fired</th><th>resolved</th><th class="num">lasted</th></tr>${resolved.alerts.map((a) => alertRow(a, true)).join('')}</table>`;
  const pending = rows.length - firing.length;
  // Firing alerts per rule, most first: what is going on at a glance.
  const perRule = new Map();
  for (const a of firing) perRule.set(a.rule, (perRule.get(a.rule) ?? 0) + 1);
  const rules = [...perRule].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([rule, n]) => `${esc(rule)} ${n}`).join(', ');
  $('alerts-count').innerHTML = `<span class="${firing.length ? 'bad' : 'ok'}">${firing.length} firing</span>${rules ? ` <span class="hint">(${rules})</span>` : ''}${pending ? ` · <span class="warn">${pending} pending</span>` : ''}`;
  const el = $('alerts');
  el.dataset.loaded = '1';
  el.dataset.firing = String(firing.length);
  el.dataset.pending = String(pending);
  el.dataset.resolved = String(resolved.alerts.length);
  // What the map marks: stations named by a firing alert, and districts named by a
  // firing alert that names no device (a district-scoped rule).
  const byDevice = new Map();
  const byDistrict = new Map();
  const add = (m, k, a) => m.set(k, [...(m.get(k) ?? []), a]);
  for (const a of firing) {
    if (a.labels.device) add(byDevice, a.labels.device, a);
    else if (a.labels.district) add(byDistrict, a.labels.district, a);
  }
  state.alertDevices = byDevice;
  state.alertDistricts = byDistrict;
  drawOverview();
}

// ---------------------------------------------------------------- start
function liveClock() {
  const el = $('live');
  const age = (Date.now() - state.lastOk) / 1000;
  el.textContent = state.lastOk ? `live · updated ${age.toFixed(0)} s ago` : 'connecting…';
  el.classList.toggle('stale', state.lastOk > 0 && age > 30);
}

legend();
wireOverview();
wireChart();
catalogMetrics().then(() => refreshDistricts().catch((e) => console.warn(e)));
$('problems').addEventListener('change', healthTable);
every(FAST, async () => tiles(await api('/api/stats')));
every(FAST, refreshAqi);
every(FAST, refreshAlerts);
every(SLOW, refreshDevices);
every(SLOW, refreshDistricts);
every(CHART, async () => {
  if (!$('device').value && state.selected) $('device').value = state.selected;
  await refreshChart();
});
setInterval(liveClock, 1000);
