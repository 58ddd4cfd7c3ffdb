// Operator actions: each one asks for a note in a small form of the page, posts it to the
// node, and shows what the node answered (or its problem+json detail) until dismissed.
// The node records every action, with its note and who did it, in its evidence log.

import { call, describe } from "./api.js";
import { byId, el } from "./dom.js";
import { label, text } from "./i18n.js";

let current = null;
let afterAction = () => {};

function form() {
  return {
    sheet: byId("action-form"),
    title: byId("action-title"),
    target: byId("action-target"),
    note: byId("action-note"),
    error: byId("action-error"),
    confirm: byId("action-confirm"),
  };
}

function close() {
  const f = form();
  f.sheet.hidden = true;
  f.error.hidden = true;
  f.confirm.disabled = false;
  current = null;
}

function showResult(ok, words, detail) {
  const box = byId("action-result");
  box.dataset.outcome = ok ? "ok" : "error";
  box.replaceChildren(
    el("strong", {}, label(ok ? "done" : "not_done")), " — ", label(words), detail ? ` ${detail}` : "",
    el("button", { type: "button", class: "link-button", testid: "action-result-dismiss",
      on: { click: () => { box.hidden = true; } } }, label("dismiss")),
  );
  box.hidden = false;
}

async function confirm(event) {
  event.preventDefault();
  if (!current) return;
  const f = form();
  const note = f.note.value.trim();
  if (!note) {
    f.error.replaceChildren(label("note_required"));
    f.error.hidden = false;
    f.note.focus();
    return;
  }
  const action = current;
  f.confirm.disabled = true;
  const answer = await call("POST", action.path, { ...action.body, note });
  close();
  if (answer.ok) showResult(true, action.verb, action.outcome ? action.outcome(answer.data) : "");
  else showResult(false, action.verb, describe(answer.problem, answer.status));
  afterAction();
}

// action: {verb: label key, target: what it acts on, path, body?, outcome?: data -> text}
export function ask(action) {
  current = { body: {}, ...action };
  const f = form();
  f.title.replaceChildren(label(action.verb));
  f.target.textContent = action.target;
  f.note.value = "";
  f.error.hidden = true;
  f.confirm.disabled = false;
  f.sheet.hidden = false;
  f.note.focus();
}

export function setUpActions(refresh) {
  afterAction = refresh;
  const f = form();
  f.sheet.querySelector("form").addEventListener("submit", confirm);
  byId("action-cancel").addEventListener("click", close);
  f.sheet.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
}

// A button for a row: shown only to operators (the caller decides), named by its verb.
export function actionButton(verb, action, { kind = "", testid = verb } = {}) {
  return el("button", { type: "button", testid, class: `act ${kind}`, title: text(verb),
    on: { click: () => ask({ verb, ...action }) } }, label(verb));
}
