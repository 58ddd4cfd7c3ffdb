// The tree around this node as SVG: the parent above, this node, its children below (an
// org chart: a bus, and one drop per child), the upstream axes it bridges to beside it.
// Each neighbour's box and the line to it carry the link's state three ways (colour, dash,
// the words), with since when and its backlog; a cut link is red, dashed and crossed.

import { ago, clock, count, parseTime, svg } from "./dom.js";
import { text, words } from "./i18n.js";

const BOX_W = 184;
const BOX_H = 84;
const GAP_X = 16;
const GAP_Y = 64;
const DROP = 38;  // the coloured line from the bus down to a child
const SIDE_GAP = 48;
const MARGIN = 8;
const STATES = new Set(["up", "down", "unknown"]);

const stateOf = (value) => (STATES.has(value) ? value : "unknown");
const both = (key) => `${words(key)[0]} · ${words(key)[1]}`;

function short(name, max = 22) {
  return name.length > max ? `${name.slice(0, max - 1)}…` : name;
}

function box({ x, y, name, kind, item, self = false }) {
  const state = self ? "self" : stateOf(item.state);
  const tip = self ? `${name} — ${text("this_node")}` : `${name} — ${text(kind)}: ${text(state)}`;
  const group = svg("g", { class: `box st-${state}`, transform: `translate(${x},${y})` },
    svg("title", {}, tip),
    svg("rect", { width: BOX_W, height: BOX_H, rx: 8 }),
    svg("text", { x: 10, y: 20, class: "name" }, short(name)));
  if (self) {
    group.append(
      svg("text", { x: 10, y: 40, class: "sub" }, both("this_node")),
      svg("text", { x: 10, y: 58, class: "sub" }, item.level || ""),
      svg("text", { x: 10, y: 76, class: "sub" }, item.version ? `v${item.version}` : ""));
    return group;
  }
  const since = parseTime(item.since);
  group.append(
    svg("text", { x: 10, y: 40, class: "state" }, both(state)),
    svg("text", { x: 10, y: 58, class: "sub" }, since ? `${clock(since)} (${ago(item.since)})` : "—"),
    svg("text", { x: 10, y: 76, class: "sub" }, `${both("backlog")}: ${count(item.backlog_total ?? 0)}`));
  return group;
}

function line(x1, y1, x2, y2, state) {
  const group = svg("g", { class: `edge st-${state}` }, svg("line", { x1, y1, x2, y2 }));
  if (state === "down") {
    const [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
    group.append(svg("path", { class: "cut", d: `M${mx - 7},${my - 7}L${mx + 7},${my + 7}M${mx + 7},${my - 7}L${mx - 7},${my + 7}` }));
  }
  return group;
}

function link(testid, item, kind, at, from, to) {
  const state = stateOf(item.state);
  return svg("g", { testid, "data-state": state, class: "link" },
    line(...from, ...to, state),
    box({ ...at, name: item.neighbour ?? item.name ?? "?", kind, item }));
}

// narrow: two children a row, this node on the left and the upstreams on its right
export function drawTopology(status, { narrow = false } = {}) {
  const links = status.links || [];
  const parents = links.filter((l) => l.role === "parent");
  const children = links.filter((l) => l.role !== "parent");
  const upstreams = status.upstreams || [];
  const perRow = narrow ? 2 : 5;
  const sides = narrow ? 1 : Math.min(2, upstreams.length);
  const upRows = Math.ceil(upstreams.length / Math.max(1, sides));
  const rows = Math.ceil(children.length / perRow);
  const cols = Math.min(perRow, children.length);
  const trunk = rows > 1 ? MARGIN + 4 : 0;  // a rail on the left when the children take rows
  const width = Math.max(
    trunk + cols * (BOX_W + GAP_X) - GAP_X + 2 * MARGIN,
    (1 + sides) * BOX_W + sides * SIDE_GAP + 2 * MARGIN + (!narrow && sides === 1 ? BOX_W + SIDE_GAP : 0),
  );
  const cx = narrow && sides ? MARGIN + BOX_W / 2 : width / 2;
  const selfY = MARGIN + (parents.length ? BOX_H + GAP_Y : 0);
  const selfBottom = selfY + Math.max(BOX_H, upRows * (BOX_H + 10) - 10);
  const rowY = (r) => selfBottom + GAP_Y + r * (BOX_H + GAP_Y);
  const height = (rows ? rowY(rows - 1) + BOX_H : selfBottom) + MARGIN;
  const drawing = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "topology", role: "img",
    "aria-label": text("topology"), testid: "topology" });

  parents.forEach((item, i) => {
    const x = cx - BOX_W / 2 + (i - (parents.length - 1) / 2) * (BOX_W + GAP_X);
    drawing.append(link(`topo-link-${item.neighbour}`, item, "parent", { x, y: MARGIN },
      [x + BOX_W / 2, MARGIN + BOX_H], [x + BOX_W / 2, selfY]));
  });
  upstreams.forEach((item, i) => {
    const right = narrow || i % 2 === 0;
    const y = selfY + Math.floor(i / Math.max(1, sides)) * (BOX_H + 10);
    const x = right ? cx + BOX_W / 2 + SIDE_GAP : cx - BOX_W / 2 - SIDE_GAP - BOX_W;
    const from = [right ? cx + BOX_W / 2 : cx - BOX_W / 2, selfY + BOX_H / 2];
    const to = [right ? x : x + BOX_W, y + BOX_H / 2];
    if (y !== selfY) from[1] = Math.min(selfY + BOX_H - 8, from[1] + 12 * Math.floor(i / Math.max(1, sides)));
    drawing.append(link(`topo-upstream-${item.name}`, item, "upstream", { x, y }, from, to));
  });
  if (rows) {
    const bus = (r) => rowY(r) - DROP;
    const centres = (r) => {
      const inRow = Math.min(perRow, children.length - r * perRow);
      const left = trunk + (width - trunk - (inRow * (BOX_W + GAP_X) - GAP_X)) / 2;
      return Array.from({ length: inRow }, (_, c) => left + c * (BOX_W + GAP_X) + BOX_W / 2);
    };
    const wires = svg("g", { class: "bus" }, svg("line", { x1: cx, y1: selfBottom, x2: cx, y2: bus(0) }));
    for (let r = 0; r < rows; r += 1) {
      const xs = centres(r);
      const from = Math.min(xs[0], cx, rows > 1 ? trunk : Infinity);
      wires.append(svg("line", { x1: from, y1: bus(r), x2: Math.max(xs[xs.length - 1], cx), y2: bus(r) }));
    }
    if (rows > 1) wires.append(svg("line", { x1: trunk, y1: bus(0), x2: trunk, y2: bus(rows - 1) }));
    drawing.append(wires);
    children.forEach((item, i) => {
      const r = Math.floor(i / perRow);
      const xc = centres(r)[i % perRow];
      drawing.append(link(`topo-link-${item.neighbour}`, item, "child", { x: xc - BOX_W / 2, y: rowY(r) },
        [xc, bus(r)], [xc, rowY(r)]));
    });
  }
  const node = status.node || {};
  drawing.append(box({ x: cx - BOX_W / 2, y: selfY, name: node.id || "?", item: node, self: true }));
  return drawing;
}
