// Live metrics: the page polls the gateway's counters (GET /_console/api/metrics) and turns the
// differences between snapshots into rates and latency quantiles, kept here for the last minutes.
import { ApiError, get } from "./api.js";
import { LineChart, PALETTE } from "./charts.js";
import { clear, fmt, h } from "./dom.js";

const POLL_MS = 2000;
const WINDOW_S = 300; // what the charts show
const QUANTILE_WINDOW_S = 30; // latency quantiles over the requests of the last 30 s

// Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank.
export function quantile(q, buckets) {
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === null) return prevLe; // +Inf: the highest finite bound is the best estimate
      return prevLe + (le - prevLe) * ((rank - prevCount) / Math.max(count - prevCount, 1e-12));
    }
    prevLe = le ?? prevLe;
    prevCount = count;
  }
  return prevLe;
}

function minus(now, before) {
  const old = new Map(before.map(([le, c]) => [le, c]));
  return now.map(([le, c]) => [le, c - (old.get(le) || 0)]);
}

function addInto(sum, buckets) {
  for (const [le, c] of buckets) sum.set(le, (sum.get(le) || 0) + c);
}

const sorted = (map) => [...map.entries()].sort((a, b) => (a[0] ?? Infinity) - (b[0] ?? Infinity));

export function mount(main) {
  const kpis = h("div", { class: "kpis" });
  const charts = {
    rps: new LineChart("rps", { windowSeconds: WINDOW_S }),
    latency: new LineChart("latency", { unit: " ms", windowSeconds: WINDOW_S }),
    ttft: new LineChart("ttft", { unit: " ms", windowSeconds: WINDOW_S }),
    tokens: new LineChart("tokens", { windowSeconds: WINDOW_S }),
    errors: new LineChart("errors", { windowSeconds: WINDOW_S }),
  };
  const card = (title, note, chart) => h("div", { class: "card chart" },
    h("h2", {}, title, h("span", { class: "muted" }, note)), chart.element);
  const table = h("div", { class: "card", id: "metrics-table" });
  const routing = h("div", { class: "card chart", id: "routing", hidden: true });
  const note = h("span", { class: "muted small", id: "metrics-note" }, "Waiting for the second sample…");
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Metrics"), note),
    kpis,
    h("div", { class: "charts" },
      card("Requests per second", "inference requests, by endpoint", charts.rps),
      card("Latency", `p50 and p99 over ${QUANTILE_WINDOW_S} s`, charts.latency),
      card("Time to first token", `streams, p50 and p99 over ${QUANTILE_WINDOW_S} s`, charts.ttft),
      card("Tokens per second", "reported by upstreams and engines", charts.tokens),
      card("Errors per second", "answers ≥ 400, by endpoint", charts.errors),
      table),
    routing);

  const last = new Map(); // source (a process, or all workers merged) -> previous snapshot
  const samples = []; // {t, source, dt, endpoints: {id: deltas}, latency, ttft}
  const totals = {};
  let timer = null;
  let alive = true;

  function ingest(snap) {
    const prev = last.get(snap.source);
    last.set(snap.source, snap);
    for (const [id, e] of Object.entries(snap.endpoints)) totals[id] = e;
    if (!prev || snap.time <= prev.time) return false;
    const endpoints = {};
    for (const [id, e] of Object.entries(snap.endpoints)) {
      const p = prev.endpoints[id] || { requests: 0, errors: 0, tokens_in: 0, tokens_out: 0 };
      endpoints[id] = Object.fromEntries(Object.keys(e).map((k) => [k, Math.max(0, e[k] - (p[k] || 0))]));
    }
    samples.push({ t: snap.time, source: snap.source, dt: snap.time - prev.time, endpoints,
      latency: minus(snap.latency, prev.latency), ttft: minus(snap.ttft, prev.ttft) });
    while (samples.length && samples[0].t < snap.time - WINDOW_S - 60) samples.shift();
    return true;
  }

  // rates at the time of sample i: each source's latest sample, summed (one source: just sample i)
  function ratesAt(i) {
    const t = samples[i].t;
    const latest = new Map();
    for (let j = i; j >= 0 && samples[j].t > t - 10; j--) {
      if (!latest.has(samples[j].source)) latest.set(samples[j].source, samples[j]);
    }
    const out = { total: 0, tokens_in: 0, tokens_out: 0, by: {}, errors: {} };
    for (const smp of latest.values()) {
      for (const [id, d] of Object.entries(smp.endpoints)) {
        out.total += d.requests / smp.dt;
        out.tokens_in += d.tokens_in / smp.dt;
        out.tokens_out += d.tokens_out / smp.dt;
        out.by[id] = (out.by[id] || 0) + d.requests / smp.dt;
        out.errors[id] = (out.errors[id] || 0) + d.errors / smp.dt;
      }
    }
    return out;
  }

  function quantilesAt(i, key) {
    const t = samples[i].t;
    const sum = new Map();
    for (let j = i; j >= 0 && samples[j].t > t - QUANTILE_WINDOW_S; j--) addInto(sum, samples[j][key]);
    const buckets = sorted(sum);
    const ms = (v) => (v === null ? null : v * 1000);
    return { p50: ms(quantile(0.5, buckets)), p99: ms(quantile(0.99, buckets)) };
  }

  function draw(now, inFlight) {
    const rates = samples.map((_, i) => ratesAt(i));
    const lat = samples.map((_, i) => quantilesAt(i, "latency"));
    const ttft = samples.map((_, i) => quantilesAt(i, "ttft"));
    const ts = samples.map((smp) => smp.t);
    // the charts span what this page has seen, from one to five minutes
    const span = ts.length ? now - ts[0] : 0;
    const shown = Math.min(WINDOW_S, Math.max(60, Math.ceil(span / 30) * 30));
    const line = (name, color, values) => ({ name, color, points: ts.map((t, i) => [t, values[i]]) });
    const ids = Object.keys(totals).sort((a, b) => totals[b].requests - totals[a].requests);
    charts.rps.update([line("all", PALETTE[0], rates.map((r) => r.total)),
      ...ids.slice(0, 5).map((id, k) => line(id, PALETTE[k + 1], rates.map((r) => r.by[id] || 0)))], now, shown);
    charts.latency.update([line("p50", PALETTE[0], lat.map((q) => q.p50)), line("p99", PALETTE[2], lat.map((q) => q.p99))], now, shown);
    charts.ttft.update([line("p50", PALETTE[1], ttft.map((q) => q.p50)), line("p99", PALETTE[4], ttft.map((q) => q.p99))], now, shown);
    charts.tokens.update([line("in", PALETTE[3], rates.map((r) => r.tokens_in)),
      line("out", PALETTE[5], rates.map((r) => r.tokens_out))], now, shown);
    const failing = ids.filter((id) => totals[id].errors > 0);
    charts.errors.update(failing.length
      ? failing.slice(0, 6).map((id, k) => line(id, PALETTE[(k + 4) % PALETTE.length], rates.map((r) => r.errors[id] || 0)))
      : [line("all", PALETTE[4], rates.map(() => 0))], now, shown);

    // the figures on top: rates averaged over the last 10 s, so one quiet sample does not read as zero
    const recent = rates.filter((_, i) => ts[i] > now - 10);
    const avg = (f) => (recent.length ? recent.reduce((acc, r) => acc + f(r), 0) / recent.length : 0);
    const cur = { total: avg((r) => r.total), tokens: avg((r) => r.tokens_in + r.tokens_out) };
    const q = lat[lat.length - 1] || {}, tq = ttft[ttft.length - 1] || {};
    const kpi = (k, v, unit, key) => h("div", { class: "card kpi", "data-kpi": key }, h("div", { class: "k" }, k),
      h("div", { class: "v" }, v, unit ? h("small", {}, unit) : null));
    clear(kpis, kpi("Requests/s", fmt(cur.total, 2), "", "rps"), kpi("Latency p50", fmt(q.p50, 0), "ms", "p50"),
      kpi("Latency p99", fmt(q.p99, 0), "ms", "p99"), kpi("TTFT p50", fmt(tq.p50, 0), "ms", "ttft"),
      kpi("Tokens/s", fmt(cur.tokens, 1), "", "tokens"), kpi("In flight", String(inFlight), "", "inflight"));

    clear(table, ids.length ? h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["Endpoint", "Requests", "Errors", "Tokens in", "Tokens out"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ids.map((id) => h("tr", {}, h("td", { class: "mono" }, id),
        ["requests", "errors", "tokens_in", "tokens_out"].map((k) => h("td", {}, String(Math.round(totals[id][k]))))))))
      : h("div", { class: "empty" }, "No inference request yet (totals since the gateway started)."));
  }

  async function poll() {
    try {
      const snap = await get("_console/api/metrics");
      if (!alive) return;
      if (ingest(snap)) note.textContent = `Sampled every ${POLL_MS / 1000} s, up to the last ${WINDOW_S / 60} minutes, kept in this page`;
      // in flight counts this very request, which is not inference
      draw(snap.time, Math.max(0, snap.in_flight - 1));
      drawRouting(routing, snap.routers || {});
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      note.textContent = err.message;
    }
    if (alive) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => { alive = false; clearTimeout(timer); };
}

// each router's targets: the breaker as last seen, and what each answered, failed or was passed over for
function drawRouting(box, routers) {
  const rows = [];
  for (const [router, targets] of Object.entries(routers).sort()) {
    for (const [target, c] of Object.entries(targets)) {
      rows.push(h("tr", { dataset: { router, target } }, h("td", { class: "mono" }, router), h("td", { class: "mono" }, target),
        h("td", {}, h("span", { class: "badge chip " + c.breaker, "data-breaker": c.breaker }, c.breaker)),
        ["chosen", "failures", "skipped"].map((k) => h("td", {}, String(Math.round(c[k] || 0))))));
    }
  }
  box.hidden = !rows.length;
  clear(box, h("h2", {}, "Routing", h("span", { class: "muted" }, "routers' targets and circuit breakers")),
    h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["Router", "Target", "Breaker", "Answered", "Failed", "Passed over"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
}
