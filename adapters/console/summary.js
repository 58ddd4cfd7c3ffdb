// The sidebar: the node, its health, drain (with its button, for operators), directory and
// certificates, receipts of the last hour; and the alerts.

import { actionButton } from "./actions.js";
import { count, duration, el, when } from "./dom.js";
import { label, text } from "./i18n.js";

function fact(key, value, testid, attrs = {}) {
  return el("div", { class: "fact" }, el("dt", {}, label(key)), el("dd", { testid, ...attrs }, value));
}

function healthFact(key, check) {
  const ok = Boolean(check?.ok);
  const detail = ok ? `${(check.ms ?? 0).toFixed(1)} ms` : check?.error || "";
  return fact(key, [el("span", { class: `dot ${ok ? "st-up" : "st-down"}` }), label(ok ? "ok" : "failing"), " ",
    el("span", { class: "muted" }, detail)], `health-${key}`, { "data-ok": String(ok) });
}

function drainCard(drain, nodeId, canAct) {
  const on = Boolean(drain);
  const body = [fact("state", [el("span", { class: `dot ${on ? "st-down" : "st-up"}` }),
    label(on ? (drain.done ? "drained" : "draining") : "accepting")], "drain-state", { "data-draining": String(on) })];
  if (on) {
    body.push(fact("since", [when(drain.since, { relative: true }), drain.by ? ` — ${drain.by}` : ""]));
    body.push(fact("in_flight", count(drain.in_flight)));
    if (drain.note) body.push(fact("note", drain.note));
  }
  const card = el("section", { class: "card mini", testid: "drain" }, el("h2", {}, label("drain")), el("dl", {}, body));
  if (canAct) {
    card.append(actionButton(on ? "drain_off" : "drain_on", {
      target: nodeId,
      path: "/v1/ops/drain",
      body: { on: !on },
      outcome: (data) => text(data.draining ? "draining" : "accepting"),
    }, { kind: on ? "" : "warn", testid: "drain-toggle" }));
  }
  return card;
}

export function summary(status, { canAct }) {
  const node = status.node || {};
  const health = status.health || {};
  const certs = status.certificates || [];
  const soonest = certs.reduce((a, c) => (a === null || c.days_left < a.days_left ? c : a), null);
  const directory = status.directory || {};
  const clockInfo = status.clock || {};
  const receipts = status.receipts_last_hour || {};
  return [
    el("section", { class: "card mini", testid: "node" }, el("h2", {}, label("node")), el("dl", {},
      fact("node_id", el("strong", {}, node.id || "?"), "node-id"),
      fact("level", node.level || "—", "node-level"),
      fact("version", node.version || "—", "node-version"),
      fact("uptime", duration(node.uptime_s), "node-uptime", { title: node.started_at || "" }))),
    el("section", { class: "card mini", testid: "health" }, el("h2", {}, label("health")), el("dl", {},
      healthFact("store", health.store), healthFact("broker", health.broker),
      fact("clock", clockInfo.offset_s === null || clockInfo.offset_s === undefined ? "—" : `${clockInfo.offset_s.toFixed(1)} s`,
        "clock", { "data-ok": String(clockInfo.ok !== false), title: clockInfo.basis || "" }))),
    drainCard(status.drain, node.id || "?", canAct),
    el("section", { class: "card mini", testid: "trust" }, el("h2", {}, label("directory")), el("dl", {},
      fact("version", directory.version ?? "—", "directory-version"),
      fact("issued", directory.age_s === null || directory.age_s === undefined ? "—" : duration(directory.age_s), "directory-age",
        { title: directory.issued_at || "" }),
      fact("certificates", soonest ? [`${soonest.days_left} `, label("days")] : "—", "certificates",
        { "data-warn": String(certs.some((c) => c.warn)), title: soonest ? soonest.subject : "" }))),
    el("section", { class: "card mini", testid: "receipts-hour" }, el("h2", {}, label("receipts_hour")),
      el("ul", { class: "counts" }, Object.entries(receipts).map(([kind, n]) =>
        el("li", { testid: `receipts-${kind}` }, el("strong", {}, count(n)), ` ${kind}`)))),
  ];
}

const SEVERITY = { critical: 0, warning: 1 };

export function alerts(list) {
  if (!list.length) return [el("p", { class: "muted ok-line" }, label("no_alerts"))];
  const ordered = [...list].sort((a, b) => (SEVERITY[a.severity] ?? 2) - (SEVERITY[b.severity] ?? 2));
  return [el("ul", { class: "alerts" }, ordered.map((a) => el("li", { class: `sev-${a.severity}`, testid: `alert-${a.name}` },
    el("span", { class: "pill" }, a.severity || ""), " ", el("strong", {}, a.name), " — ", a.summary || "")))];
}
