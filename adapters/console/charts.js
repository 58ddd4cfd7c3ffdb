// Small SVG line charts over status.series: one point a minute, oldest first, last hour.

import { clock, count, el, parseTime, svg } from "./dom.js";
import { label, text } from "./i18n.js";

const W = 520;
const H = 168;
const M = { left: 44, right: 14, top: 12, bottom: 26 };

function niceCeiling(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function xScale(points) {
  const times = points.map((p) => parseTime(p.at));
  const span = { left: M.left, right: W - M.right };
  if (times.every(Boolean) && points.length > 1) {
    const first = times[0].getTime();
    const last = times[times.length - 1].getTime();
    const range = Math.max(1, last - first);
    return { at: (i) => span.left + ((times[i].getTime() - first) / range) * (span.right - span.left), times };
  }
  const n = Math.max(1, points.length - 1);
  return { at: (i) => span.left + (i / n) * (span.right - span.left), times };
}

// series: [{key: "backlog", label: "backlog", cls: "s-backlog"}]; area fills under the first.
export function lineChart({ points, series, area = false, testid }) {
  const drawing = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", testid,
    "aria-label": series.map((s) => text(s.label)).join(", ") });
  if (!points.length) {
    drawing.append(svg("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" }, text("no_data")));
    return drawing;
  }
  const top = niceCeiling(Math.max(...points.flatMap((p) => series.map((s) => Number(p[s.key]) || 0))));
  const y = (v) => H - M.bottom - ((Number(v) || 0) / top) * (H - M.top - M.bottom);
  const x = xScale(points);
  for (const tick of [0, top / 2, top]) {
    drawing.append(
      svg("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(tick), y2: y(tick) }),
      svg("text", { class: "tick", x: M.left - 6, y: y(tick) + 4, "text-anchor": "end" }, count(tick)),
    );
  }
  const last = points.length - 1;
  for (const i of new Set([0, Math.floor(last / 2), last])) {
    const anchor = i === 0 ? "start" : i === last ? "end" : "middle";
    const when = x.times[i] ? clock(x.times[i]) : String(i);
    drawing.append(svg("text", { class: "tick", x: x.at(i), y: H - 6, "text-anchor": anchor }, when));
  }
  series.forEach((s, n) => {
    const line = points.map((p, i) => `${i ? "L" : "M"}${x.at(i).toFixed(1)},${y(p[s.key]).toFixed(1)}`).join("");
    if (area && n === 0) {
      const base = y(0).toFixed(1);
      drawing.append(svg("path", { class: `area ${s.cls}`, d: `${line}L${x.at(last).toFixed(1)},${base}L${x.at(0).toFixed(1)},${base}Z` }));
    }
    drawing.append(svg("path", { class: `line ${s.cls}`, d: line }));
    drawing.append(svg("circle", { class: `dot ${s.cls}`, cx: x.at(last), cy: y(points[last][s.key]), r: 3 }));
  });
  // hover: one column per minute, its values in a title
  const step = (W - M.left - M.right) / Math.max(1, points.length);
  points.forEach((p, i) => {
    const readings = series.map((s) => `${text(s.label)}: ${count(Number(p[s.key]) || 0)}`);
    drawing.append(svg("rect", { class: "hover", x: x.at(i) - step / 2, y: M.top, width: step, height: H - M.top - M.bottom },
      svg("title", {}, [x.times[i] ? clock(x.times[i]) : "", ...readings].join("\n"))));
  });
  return drawing;
}

// The legend above a chart: a swatch, the label, and a figure (now or summed over the hour).
export function legend(points, series) {
  return el("ul", { class: "legend" }, series.map((s) => {
    const values = points.map((p) => Number(p[s.key]) || 0);
    const figure = s.sum ? values.reduce((a, b) => a + b, 0) : values[values.length - 1];
    return el("li", { testid: `legend-${s.key}` },
      el("span", { class: `swatch ${s.cls}` }), label(s.label), ": ",
      el("strong", {}, count(figure ?? 0)), " ", el("span", { class: "muted" }, label(s.sum ? "last_hour" : "now")));
  }));
}
