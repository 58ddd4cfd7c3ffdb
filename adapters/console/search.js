// Search by DocumentId, party (OrganId) or date range; a result opens the package's view:
// its route (the hop records), each recipient's state, and the signed receipts.

import { call, describe, query } from "./api.js";
import { byId, el, when } from "./dom.js";
import { label, text } from "./i18n.js";
import { table } from "./tables.js";

function problemLine(answer) {
  return el("p", { class: "problem", testid: "search-error" }, describe(answer.problem, answer.status));
}

// one row per package: the events the search found for it, in order
function byPackage(items) {
  const found = new Map();
  for (const item of items) {
    const row = found.get(item.message_id) || { ...item, events: [] };
    row.events.push(item.event);
    if (!row.at || (item.at && item.at < row.at)) row.at = item.at;
    found.set(item.message_id, row);
  }
  return [...found.values()];
}

function route(hops) {
  if (!hops.length) return el("p", { class: "muted" }, label("none"));
  return el("ol", { class: "route", testid: "package-route" },
    hops.map(([node, at], i) => el("li", { testid: `hop-${i}` },
      el("strong", {}, node), " ", when(at))));
}

function download(receipt, i) {
  return el("button", { type: "button", class: "link-button", testid: `receipt-download-${i}`,
    on: { click: () => {
      const bytes = Uint8Array.from(atob(receipt.document), (c) => c.charCodeAt(0));
      const href = URL.createObjectURL(new Blob([bytes], { type: "application/xml" }));
      const a = el("a", { href, download: `receipt-${receipt.node}-${i}.xml` });
      a.click();
      setTimeout(() => URL.revokeObjectURL(href), 1000);
    } } }, label("download"));
}

export function packageView(pkg) {
  const facts = [
    ["message_id", pkg.message_id], ["document_id", pkg.document_id], ["sender", pkg.sender],
    ["kind", pkg.kind], ["level", pkg.level], ["origin", pkg.origin === undefined ? null : text(pkg.origin ? "yes" : "no")],
  ];
  return el("div", { testid: "package-detail", "data-message-id": pkg.message_id },
    el("h3", {}, label("package"), " ", el("code", {}, pkg.message_id || "")),
    el("dl", { class: "facts" }, facts.filter(([, v]) => v !== null && v !== undefined).flatMap(([k, v]) => [
      el("dt", {}, label(k)), el("dd", {}, String(v))])),
    el("dl", { class: "facts" }, el("dt", {}, label("received_at")), el("dd", {}, when(pkg.received_at))),
    el("h4", {}, label("route")),
    route(pkg.hops || []),
    el("h4", {}, label("recipients")),
    table({
      testid: "package-recipients",
      rows: pkg.recipients || [],
      rowId: (r) => `recipient-${r.recipient}`,
      rowAttrs: (r) => ({ "data-transport": r.transport }),
      columns: [
        ["recipient", (r) => r.recipient],
        ["transport", (r) => el("span", { class: `pill tr-${r.transport}` }, r.transport || "—")],
        ["when", (r) => when(r.at)],
        ["node", (r) => r.node || "—"],
        ["reason", (r) => r.reason || "—"],
        ["business", (r) => (r.status ? `${r.status}${r.status_meaning ? ` ${r.status_meaning}` : ""}` : "—")],
        ["overdue", (r) => (r.overdue ? el("span", { class: "pill st-down" }, label("overdue")) : "—")],
      ],
    }),
    el("h4", {}, label("receipts")),
    table({
      testid: "package-receipts",
      rows: pkg.receipts || [],
      columns: [
        ["node", (r) => r.node],
        ["recipients", (r) => (r.recipients || []).join(", ")],
        ["when", (r) => when(r.at)],
        ["actions", (r, i) => (r.document ? download(r, i) : "—")],
      ],
    }),
    (pkg.statuses || []).length ? el("div", {},
      el("h4", {}, label("statuses")),
      table({ testid: "package-statuses", rows: pkg.statuses,
        columns: [["when", (s) => when(s[0])], ["sender", (s) => s[1]], ["state", (s) => s[2]]] })) : null,
  );
}

async function open(id) {
  const pane = byId("package-pane");
  pane.replaceChildren(el("p", { class: "muted" }, "…"));
  const answer = await call("GET", `/v1/ops/packages/${encodeURIComponent(id)}`);
  pane.replaceChildren(answer.ok ? packageView(answer.data) : problemLine(answer));
  pane.scrollIntoView({ block: "nearest" });
}

async function search(event) {
  event.preventDefault();
  const params = {
    document_id: byId("search-document-id").value.trim(),
    party: byId("search-party").value.trim(),
    since: byId("search-since").value,
    until: byId("search-until").value,
  };
  const results = byId("search-results");
  if (!Object.values(params).some(Boolean)) {
    results.replaceChildren(el("p", { class: "problem" }, label("search_hint")));
    return;
  }
  results.replaceChildren(el("p", { class: "muted" }, "…"));
  const answer = await call("GET", `/v1/ops/search?${query(params)}`);
  if (!answer.ok) {
    results.replaceChildren(problemLine(answer));
    return;
  }
  const rows = byPackage(answer.data.items || []);
  results.replaceChildren(table({
    testid: "search-results-table",
    rows,
    empty: "no_results",
    rowId: (r) => `search-result-${r.message_id}`,
    rowAttrs: () => ({ class: "clickable" }),
    onRow: (r) => open(r.message_id),
    columns: [
      ["message_id", (r) => el("code", {}, r.message_id)],
      ["document_id", (r) => r.document_id || "—"],
      ["sender", (r) => r.sender || "—"],
      ["kind", (r) => r.kind || "—"],
      ["when", (r) => when(r.at)],
      ["events", (r) => r.events.filter(Boolean).join(", ")],
      ["details", (r) => el("button", { type: "button", testid: "open", class: "link-button",
        on: { click: (e) => { e.stopPropagation(); open(r.message_id); } } }, label("details"))],
    ],
  }));
}

export function setUpSearch() {
  byId("search-form").addEventListener("submit", search);
}
