// The console's own charts, drawn as SVG: time-series lines, a similarity heat map, score bars.
import { clear, fmt, h, s } from "./dom.js";

export const PALETTE = ["#1f4ed8", "#0ea5e9", "#f59e0b", "#10b981", "#e11d48", "#8b5cf6", "#64748b", "#d946ef"];

const W = 560, H = 190, LEFT = 46, RIGHT = 10, TOP = 10, BOTTOM = 24;

// 1, 2 or 5 times a power of ten, at least `value`
function niceCeil(value) {
  if (!(value > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= value) return m * p;
  return 10 * p;
}

export class LineChart {
  constructor(id, { unit = "", windowSeconds = 300 } = {}) {
    this.unit = unit;
    this.windowSeconds = windowSeconds;
    this.svg = s("svg", { class: "line", viewBox: `0 0 ${W} ${H}`, role: "img", "data-chart": id,
      "aria-label": id });
    this.legend = h("div", { class: "legend" });
    this.element = h("div", {}, this.svg, this.legend);
  }

  // series: [{name, color, points: [[unixSeconds, value or null], ...]}]; window: seconds shown
  update(series, now, windowSeconds = this.windowSeconds) {
    const t0 = now - windowSeconds;
    const x = (t) => LEFT + ((t - t0) / windowSeconds) * (W - LEFT - RIGHT);
    let max = 0;
    let drawn = 0;
    for (const se of series) for (const [t, v] of se.points) if (v !== null && t >= t0) { max = Math.max(max, v); drawn++; }
    const top = niceCeil(max * 1.1);
    const divisions = top / 10 ** Math.floor(Math.log10(top)) === 2 ? 4 : 5; // steps of 1, 2 or 5 units
    const y = (v) => H - BOTTOM - (v / top) * (H - TOP - BOTTOM);
    const svg = clear(this.svg);
    for (let i = 0; i <= divisions; i++) {
      const v = (top * i) / divisions;
      svg.append(s("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v) }),
        s("text", { class: "axis", x: LEFT - 6, y: y(v) + 3.5, "text-anchor": "end" }, fmtAxis(v, this.unit)));
    }
    const step = windowSeconds > 120 ? 60 : windowSeconds > 60 ? 30 : 15;
    for (let ago = 0; ago <= windowSeconds; ago += step) {
      svg.append(s("text", { class: "axis", x: x(now - ago), y: H - 6, "text-anchor": ago === 0 ? "end" : "middle" },
        ago === 0 ? "now" : ago % 60 === 0 ? `-${ago / 60}m` : `-${ago}s`));
    }
    for (const se of series) {
      let d = "";
      const pts = se.points.filter(([t]) => t >= t0);
      pts.forEach(([t, v], i) => {
        if (v === null) return;
        const pen = i > 0 && pts[i - 1][1] !== null;
        d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        // a point with no neighbour draws no line: mark it with a dot
        if (!pen && (i + 1 >= pts.length || pts[i + 1][1] === null)) {
          svg.append(s("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: se.color }));
        }
      });
      if (d) svg.append(s("path", { class: "series", d, stroke: se.color, "data-series": se.name }, s("title", {}, se.name)));
    }
    const first = series[0] && series[0].points.filter(([, v]) => v !== null);
    this.svg.dataset.points = String(drawn);
    this.svg.dataset.max = String(max);
    this.svg.dataset.last = first && first.length ? String(first[first.length - 1][1]) : "";
    clear(this.legend, ...series.map((se) => {
      const swatch = h("i");
      swatch.style.background = se.color;
      const last = se.points.length ? se.points[se.points.length - 1][1] : null;
      return h("span", {}, swatch, se.name, h("b", {}, last === null ? "" : ` ${fmt(last, 2)}${this.unit}`));
    }));
  }
}

function fmtAxis(v, unit) {
  if (v >= 1000) return `${+(v / 1000).toFixed(1)}k${unit}`;
  return `${+v.toFixed(2)}${unit}`;
}

// A matrix of cosine similarities: blue for 1, white for 0, orange below 0.
export function heatMap(matrix, labels) {
  const n = matrix.length;
  const cell = Math.max(34, Math.min(64, Math.floor(440 / Math.max(n, 1))));
  const labelW = 180;
  const width = labelW + n * cell + 2, height = 22 + n * cell + 2;
  const svg = s("svg", { class: "heat", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": "cosine similarity heat map", "data-size": n });
  for (let j = 0; j < n; j++) {
    svg.append(s("text", { x: labelW + j * cell + cell / 2, y: 14, "text-anchor": "middle", fill: "currentColor" }, `#${j + 1}`));
  }
  for (let i = 0; i < n; i++) {
    const label = labels[i].length > 24 ? labels[i].slice(0, 23) + "…" : labels[i];
    svg.append(s("text", { x: labelW - 8, y: 22 + i * cell + cell / 2 + 4, "text-anchor": "end", fill: "currentColor" },
      `#${i + 1} ${label}`, s("title", {}, labels[i])));
    for (let j = 0; j < n; j++) {
      const v = matrix[i][j];
      const [r, g, b] = v >= 0 ? mix([255, 255, 255], [31, 78, 216], v) : mix([255, 255, 255], [234, 88, 12], -v);
      svg.append(s("rect", { x: labelW + j * cell, y: 22 + i * cell, width: cell - 2, height: cell - 2, rx: 4,
        fill: `rgb(${r},${g},${b})`, "data-value": v.toFixed(4) }, s("title", {}, `#${i + 1} · #${j + 1}: ${v.toFixed(4)}`)),
      s("text", { x: labelW + j * cell + cell / 2 - 1, y: 22 + i * cell + cell / 2 + 3, "text-anchor": "middle",
        fill: Math.abs(v) > 0.55 ? "#fff" : "#18212f" }, v.toFixed(2)));
    }
  }
  return svg;
}

function mix(a, b, t) {
  const k = Math.max(0, Math.min(1, t));
  return a.map((c, i) => Math.round(c + (b[i] - c) * k));
}

// Horizontal bars: [{name, value, title}], scaled to the largest |value|.
export function bars(items, { digits = 4 } = {}) {
  const max = Math.max(...items.map((it) => Math.abs(it.value)), 1e-12);
  return h("div", { class: "bars" }, items.map((it) => {
    const fill = h("div", { class: "bar-fill" });
    fill.style.width = `${Math.max(1, (100 * Math.abs(it.value)) / max)}%`;
    return h("div", { class: "bar-row", "data-value": String(it.value) },
      h("span", { class: "name", title: it.title || it.name }, it.name),
      h("div", { class: "bar-track" }, fill),
      h("span", { class: "val" }, it.value.toFixed(digits)));
  }));
}
