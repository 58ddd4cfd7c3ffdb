// One way to draw a table: labelled headers, one row per item with a stable test id, cells
// from functions that return text (set as text) or elements; an empty table says so.

import { el } from "./dom.js";
import { label } from "./i18n.js";

// columns: [[label key, (row, index) => text | Node, class?], ...]
export function table({ columns, rows, rowId, rowAttrs, onRow, empty = "none", testid }) {
  const head = el("thead", {}, el("tr", {}, columns.map(([key, , cls]) => el("th", { class: cls, scope: "col" }, label(key)))));
  const body = el("tbody", {});
  if (!rows.length) {
    body.append(el("tr", { class: "empty" }, el("td", { colspan: columns.length }, label(empty))));
  }
  rows.forEach((row, i) => {
    const attrs = { testid: rowId ? rowId(row, i) : null, ...(rowAttrs ? rowAttrs(row, i) : {}) };
    if (onRow) attrs.on = { click: () => onRow(row, i) };
    body.append(el("tr", attrs, columns.map(([key, cell, cls]) => {
      const value = cell(row, i);
      return el("td", { class: cls, "data-col": key }, value === null || value === undefined || value === "" ? "—" : value);
    })));
  });
  return el("div", { class: "table-wrap" }, el("table", { testid }, head, body));
}
