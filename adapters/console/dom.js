// Building elements without ever parsing server text as markup: text goes in as text nodes.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else if (name === "testid") node.setAttribute("data-testid", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// el("td", {class: "num", testid: "x"}, "text or", nodeA, [nodeB])
export function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function byId(id) {
  return document.getElementById(id);
}

// ---- time, read in the browser's own time zone; the full ISO stamp stays in a title ----

const pad = (n) => String(n).padStart(2, "0");

export function parseTime(iso) {
  if (!iso) return null;
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? null : at;
}

export function clock(at) {
  return `${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

export function stamp(iso) {
  const at = parseTime(iso);
  if (!at) return iso ? String(iso) : "—";
  const now = new Date();
  const day = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
  const time = `${clock(at)}:${pad(at.getSeconds())}`;
  return at.toDateString() === now.toDateString() ? time : `${day} ${time}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  let s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function ago(iso) {
  const at = parseTime(iso);
  return at ? duration((Date.now() - at.getTime()) / 1000) : "—";
}

// <time> with the local reading, how long ago, and the server's stamp on hover.
export function when(iso, { relative = false } = {}) {
  if (!iso) return el("span", { class: "muted" }, "—");
  const reading = relative ? `${stamp(iso)} (${ago(iso)})` : stamp(iso);
  return el("time", { datetime: iso, title: iso }, reading);
}

export function count(n) {
  return typeof n === "number" ? n.toLocaleString("vi-VN") : "—";
}
