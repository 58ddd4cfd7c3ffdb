// The operator console: log in with an operator token, then read GET /status every 5 s and
// draw it. Viewers see everything and no action button. Every string from the server goes
// into the page as text (textContent), never as markup. See docs/console.md.

import { setUpActions } from "./actions.js";
import { call, describe, session } from "./api.js";
import { attention } from "./attention.js";
import { legend, lineChart } from "./charts.js";
import { byId, el } from "./dom.js";
import { label, labelPage, text } from "./i18n.js";
import { linkTables, places } from "./lists.js";
import { setUpSearch } from "./search.js";
import { alerts, summary } from "./summary.js";
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

// ---------------------------------------------------------------- drawing it all

function render(status) {
  document.title = `${status.node?.id || "?"} · ${text("title")}`;
  byId("summary").replaceChildren(...summary(status, { canAct: canAct() }));
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
  byId("attention-body").replaceChildren(...attention(status, { canAct: canAct() }));
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
