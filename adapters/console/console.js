// The operator console: log in with an operator token, then read GET /status every 5 s and
// draw it. Viewers see everything and no action button. Every string from the server goes
// into the page as text (textContent), never as markup. See docs/console.md.

import { actionButton, setUpActions } from "./actions.js";
import { call, describe, session } from "./api.js";
import { legend, lineChart } from "./charts.js";
import { ago, byId, count, duration, el, when } from "./dom.js";
import { label, labelPage, text } from "./i18n.js";
import { setUpSearch } from "./search.js";
import { table } from "./tables.js";
import { drawTopology } from "./topology.js";

const REFRESH_MS = 5000;
const NARROW = window.matchMedia("(max-width: 760px)");
const state = { who: null, timer: null, busy: false, again: false, last: null };
const canAct = () => state.who?.role === "operator";

// ---------------------------------------------------------------- log in, log out

function showLogin(problem) {
  clearTimeout(state.timer);
  state.who = null;
  byId("console").hidden = true;
  byId("whoami").hidden = true;
  byId("logout").hidden = true;
  byId("login").hidden = false;
  const error = byId("login-error");
  error.hidden = !problem;
  error.replaceChildren(...(problem ? [problem] : []));
  byId("login-token").focus();
}

async function logIn(token, { saved = false } = {}) {
  session.token = token;
  const answer = await call("GET", "/v1/ops/whoami");
  if (!answer.ok) {
    session.token = null;
    const why = answer.status === 401 ? label(saved ? "session_over" : "token_refused") : null;
    showLogin(el("span", {}, why, why ? " — " : "", describe(answer.problem, answer.status)));
    return;
  }
  state.who = answer.data;
  const role = state.who.role === "operator" ? "operator" : "viewer";
  const who = byId("whoami");
  who.dataset.role = role;
  who.replaceChildren(el("strong", { title: text("signed_in") }, state.who.name || "?"), " ",
    el("span", { class: `pill role-${role}` }, label(role)));
  who.hidden = false;
  document.body.classList.toggle("viewer", role !== "operator");
  byId("logout").hidden = false;
  byId("login").hidden = true;
  byId("console").hidden = false;
  await refresh();
}

function logOut() {
  session.token = null;
  byId("login-token").value = "";
  showLogin(null);
}

// ---------------------------------------------------------------- refresh

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, REFRESH_MS);
}

async function refresh() {
  if (!state.who) return;
  if (state.busy) {
    state.again = true;
    return;
  }
  state.busy = true;
  try {
    const answer = await call("GET", "/status");
    const mark = byId("refresh-state");
    if (answer.status === 401) {
      session.token = null;
      showLogin(label("session_over"));
      return;
    }
    if (answer.ok) {
      render(answer.data);
      mark.dataset.state = "ok";
      mark.replaceChildren(label("refreshed"), " ", el("time", {}, new Date().toLocaleTimeString("vi-VN")));
    } else {
      mark.dataset.state = "error";
      mark.replaceChildren(label("not_refreshing"), ": ", describe(answer.problem, answer.status));
    }
  } finally {
    state.busy = false;
  }
  if (state.again) {
    state.again = false;
    await refresh();
  } else if (state.who) {
    schedule();
  }
}

// ---------------------------------------------------------------- the summary strip

function fact(key, value, testid, attrs = {}) {
  return el("div", { class: "fact" }, el("dt", {}, label(key)), el("dd", { testid, ...attrs }, value));
}

function healthFact(key, check) {
  const ok = Boolean(check?.ok);
  const detail = ok ? `${(check.ms ?? 0).toFixed(1)} ms` : check?.error || "";
  return fact(key, [el("span", { class: `dot ${ok ? "st-up" : "st-down"}` }), label(ok ? "ok" : "failing"), " ",
    el("span", { class: "muted" }, detail)], `health-${key}`, { "data-ok": String(ok) });
}

function drainCard(drain, nodeId) {
  const on = Boolean(drain);
  const body = [fact("state", [el("span", { class: `dot ${on ? "st-down" : "st-up"}` }),
    label(on ? (drain.done ? "drained" : "draining") : "accepting")], "drain-state", { "data-draining": String(on) })];
  if (on) {
    body.push(fact("since", [when(drain.since, { relative: true }), drain.by ? ` — ${drain.by}` : ""]));
    body.push(fact("in_flight", count(drain.in_flight)));
    if (drain.note) body.push(fact("note", drain.note));
  }
  const card = el("section", { class: "card mini", testid: "drain" }, el("h2", {}, label("drain")), el("dl", {}, body));
  if (canAct()) {
    card.append(actionButton(on ? "drain_off" : "drain_on", {
      target: nodeId,
      path: "/v1/ops/drain",
      body: { on: !on },
      outcome: (data) => text(data.draining ? "draining" : "accepting"),
    }, { kind: on ? "" : "warn", testid: "drain-toggle" }));
  }
  return card;
}

function summary(status) {
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
    drainCard(status.drain, node.id || "?"),
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

function alerts(list) {
  if (!list.length) return [el("p", { class: "muted ok-line" }, label("no_alerts"))];
  const ordered = [...list].sort((a, b) => (SEVERITY[a.severity] ?? 2) - (SEVERITY[b.severity] ?? 2));
  return [el("ul", { class: "alerts" }, ordered.map((a) => el("li", { class: `sev-${a.severity}`, testid: `alert-${a.name}` },
    el("span", { class: "pill" }, a.severity || ""), " ", el("strong", {}, a.name), " — ", a.summary || "")))];
}

// ---------------------------------------------------------------- link states

function stateLabel(value) {
  const known = ["up", "down", "unknown"].includes(value) ? value : "unknown";
  return el("span", { class: `pill st-${known}` }, label(known));
}

const lanes = (b) => (b ? `${count((b.urgent || 0) + (b.normal || 0) + (b.bulk || 0))}` : "—");
const laneTitle = (b) => (b ? `urgent ${b.urgent || 0} · normal ${b.normal || 0} · bulk ${b.bulk || 0}` : "");

function linkTables(status) {
  return [
    el("h3", {}, label("links")),
    table({
      testid: "links-table",
      rows: status.links || [],
      rowId: (l) => `link-${l.neighbour}`,
      rowAttrs: (l) => ({ "data-state": l.state, class: `row-${l.state}` }),
      columns: [
        ["neighbour", (l) => el("strong", {}, l.neighbour)],
        ["role", (l) => label(l.role === "parent" ? "parent" : "child")],
        ["state", (l) => stateLabel(l.state)],
        ["since", (l) => when(l.since, { relative: true })],
        ["last_error", (l) => l.last_error, "wrap"],
        ["backlog_out", (l) => el("span", { title: laneTitle(l.backlog?.out) }, lanes(l.backlog?.out)), "num"],
        ["backlog_in", (l) => el("span", { title: laneTitle(l.backlog?.in) }, lanes(l.backlog?.in)), "num"],
      ],
    }),
    el("h3", {}, label("upstreams")),
    table({
      testid: "upstreams-table",
      rows: status.upstreams || [],
      rowId: (u) => `upstream-${u.name}`,
      rowAttrs: (u) => ({ "data-state": u.state, class: `row-${u.state}` }),
      columns: [
        ["name", (u) => el("strong", {}, u.name)],
        ["protocol", (u) => u.protocol],
        ["state", (u) => stateLabel(u.state)],
        ["since", (u) => when(u.since, { relative: true })],
        ["last_error", (u) => u.last_error, "wrap"],
        ["backlog", (u) => count(u.backlog_total), "num"],
        ["last_ok", (u) => when(u.last_ok)],
        ["taken_sent", (u) => `${count(u.taken)} / ${count(u.sent)} / ${count(u.refused)}`, "num"],
      ],
    }),
  ];
}

// ---------------------------------------------------------------- what needs a person

function shown(part) {
  const items = part?.items || [];
  const total = part?.count ?? items.length;
  return el("span", { class: "count", "data-count": total },
    items.length < total ? `${items.length} ${text("shown_of")} ${count(total)}` : count(total));
}

// DocumentId and sender on the first line, the message id under them
function packageCell(item) {
  if (!item.message_id && !item.document_id) return null;
  return el("div", { class: "pkg" },
    el("div", {}, el("strong", {}, item.document_id || "—"), item.sender ? ` · ${item.sender}` : ""),
    item.message_id ? el("code", { class: "muted" }, item.message_id) : null);
}

const deadTarget = (d) => [`${text("dead_letters")} #${d.id}`, d.document_id, d.sender, d.reason].filter(Boolean).join("\n");
const heldTarget = (q) => [`${text("quarantine")}: ${q.message_id}`, q.document_id, q.sender, q.reason].filter(Boolean).join("\n");

function attention(status) {
  const act = canAct();
  const dead = status.dead_letters || {};
  const held = status.quarantine || {};
  const failed = status.failed || {};
  const overdue = status.overdue || {};
  const actions = (buttons) => (act ? el("div", { class: "buttons" }, buttons) : null);
  const columns = (list, extra) => (act ? [...list, ["actions", extra]] : list);
  return [
    el("h3", {}, label("dead_letters"), " ", shown(dead)),
    table({
      testid: "dead-letters-table",
      rows: dead.items || [],
      rowId: (d) => `deadletter-${d.id}`,
      columns: columns([
        ["when", (d) => when(d.dead_at, { relative: true })],
        ["source", (d) => d.source],
        ["reason", (d) => el("span", { testid: "reason" }, d.reason || "—"), "wrap"],
        ["attempts", (d) => count(d.attempts), "num"],
        ["package", (d) => packageCell(d)],
      ], (d) => actions([
        actionButton("replay", { target: deadTarget(d), path: `/v1/ops/dead-letters/${encodeURIComponent(d.id)}/replay`,
          outcome: (data) => `${text("replayed_to")} ${data.to ?? "?"}` }),
        actionButton("purge", { target: deadTarget(d), path: `/v1/ops/dead-letters/${encodeURIComponent(d.id)}/purge`,
          outcome: (data) => `${text("purged")}: ${count(data.failed_receipts ?? 0)}` }, { kind: "danger" }),
      ])),
    }),
    el("h3", {}, label("quarantine"), " ", shown(held)),
    table({
      testid: "quarantine-table",
      rows: held.items || [],
      rowId: (q) => `quarantine-${q.message_id}`,
      columns: columns([
        ["when", (q) => when(q.held_at, { relative: true })],
        ["source", (q) => q.source],
        ["reason", (q) => el("span", { testid: "reason" }, q.reason || "—"), "wrap"],
        ["package", (q) => packageCell(q)],
      ], (q) => actions([
        actionButton("release", { target: heldTarget(q), path: `/v1/ops/quarantine/${encodeURIComponent(q.message_id)}/release`,
          outcome: () => text("released") }),
        actionButton("refuse", { target: heldTarget(q), path: `/v1/ops/quarantine/${encodeURIComponent(q.message_id)}/refuse`,
          outcome: () => text("refused") }, { kind: "danger" }),
      ])),
    }),
    el("h3", {}, label("failed"), " ", shown(failed)),
    table({
      testid: "failed-table",
      rows: failed.items || [],
      rowId: (f) => `failed-${f.id}`,
      columns: [
        ["when", (f) => when(f.failed_at, { relative: true })],
        ["target", (f) => f.target],
        ["reason", (f) => el("span", { testid: "reason" }, f.reason || "—"), "wrap"],
        ["message_id", (f) => (f.message_id ? el("code", {}, f.message_id) : "—")],
      ],
    }),
    el("h3", {}, label("overdue"), " ", shown(overdue)),
    table({
      testid: "overdue-table",
      rows: overdue.items || [],
      rowId: (o) => `overdue-${o.message_id}-${o.recipient}`,
      columns: [
        ["recipient", (o) => o.recipient],
        ["document_id", (o) => o.document_id],
        ["sender", (o) => o.sender],
        ["delivered_at", (o) => when(o.delivered_at)],
        ["due", (o) => [when(o.due), " ", el("span", { class: "late" }, `+${ago(o.due)}`)]],
        ["message_id", (o) => el("code", {}, o.message_id)],
      ],
    }),
  ];
}

function places(status) {
  const mail = status.mailboxes || {};
  return {
    queues: table({
      testid: "queues-table",
      rows: status.queues || [],
      rowId: (q) => `queue-${q.name}`,
      columns: [
        ["name", (q) => el("code", {}, q.name), "wrap"],
        ["messages", (q) => count(q.messages), "num"],
        ["consumers", (q) => count(q.consumers), "num"],
      ],
    }),
    mailboxes: [
      el("p", { class: "muted" }, label("total"), ": ", el("strong", { testid: "mailboxes-total" }, count(mail.pending_total ?? 0))),
      table({
        testid: "mailboxes-table",
        rows: mail.top || [],
        rowId: (m) => `mailbox-${m.organ}`,
        columns: [
          ["organ", (m) => m.organ],
          ["pending", (m) => count(m.pending), "num"],
          ["oldest", (m) => when(m.oldest, { relative: true })],
        ],
      }),
    ],
  };
}

// ---------------------------------------------------------------- drawing it all

function render(status) {
  document.title = `${status.node?.id || "?"} · ${text("title")}`;
  byId("summary").replaceChildren(...summary(status));
  byId("alerts").replaceChildren(...alerts(status.alerts || []));
  state.last = status;
  byId("topology").replaceChildren(drawTopology(status, { narrow: NARROW.matches }));
  const points = status.series?.points || [];
  const backlog = [{ key: "backlog", label: "backlog", cls: "s-backlog" }];
  const flow = [
    { key: "admitted", label: "admitted", cls: "s-admitted", sum: true },
    { key: "delivered", label: "delivered", cls: "s-delivered", sum: true },
  ];
  byId("chart-backlog").replaceChildren(legend(points, backlog), lineChart({ points, series: backlog, area: true, testid: "chart-backlog-svg" }));
  byId("chart-throughput").replaceChildren(legend(points, flow), lineChart({ points, series: flow, testid: "chart-throughput-svg" }));
  byId("attention-body").replaceChildren(...attention(status));
  byId("links-body").replaceChildren(...linkTables(status));
  const { queues, mailboxes } = places(status);
  byId("queues-body").replaceChildren(queues);
  byId("mailboxes-body").replaceChildren(...mailboxes);
}

function boot() {
  labelPage();
  setUpActions(refresh);
  setUpSearch();
  byId("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = byId("login-token").value.trim();
    if (token) logIn(token);
  });
  byId("logout").addEventListener("click", logOut);
  NARROW.addEventListener("change", () => {
    if (state.last) byId("topology").replaceChildren(drawTopology(state.last, { narrow: NARROW.matches }));
  });
  if (session.token) logIn(session.token, { saved: true });
  else showLogin(null);
}

boot();
