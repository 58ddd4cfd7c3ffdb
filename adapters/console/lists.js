// The links and upstream axes, the broker's queues, the mailboxes waiting for their agency.

import { count, el, when } from "./dom.js";
import { label } from "./i18n.js";
import { table } from "./tables.js";

function stateLabel(value) {
  const known = ["up", "down", "unknown"].includes(value) ? value : "unknown";
  return el("span", { class: `pill st-${known}` }, label(known));
}

const lanes = (b) => (b ? `${count((b.urgent || 0) + (b.normal || 0) + (b.bulk || 0))}` : "—");
const laneTitle = (b) => (b ? `urgent ${b.urgent || 0} · normal ${b.normal || 0} · bulk ${b.bulk || 0}` : "");

export function linkTables(status) {
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

export function places(status) {
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
