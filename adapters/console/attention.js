// What needs a person: dead letters and quarantined packages (with their actions, for
// operators), failed copies, overdue acknowledgements. Each with its reason.

import { actionButton } from "./actions.js";
import { ago, count, el, when } from "./dom.js";
import { label, text } from "./i18n.js";
import { table } from "./tables.js";

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

export function attention(status, { canAct }) {
  const act = canAct;
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
