// The console's only way to the node: bearer-token calls, relative to /ops/ so the page also
// works behind a proxy that mounts the node under a path. Answers come back as values, never
// thrown: {ok, status, data} or {ok: false, status, problem} (problem+json, or one made here).

const TOKEN_KEY = "lienthong.ops.token";
const DEADLINE_MS = 15000;

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

function url(path) {
  return new URL(`..${path}`, document.baseURI).toString();
}

async function read(response) {
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return await response.text();
}

export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), DEADLINE_MS);
  try {
    const response = await fetch(url(path), { ...init, signal: abort.signal });
    const data = await read(response);
    if (response.ok) return { ok: true, status: response.status, data };
    const problem = data && typeof data === "object"
      ? data
      : { status: response.status, title: response.statusText, detail: String(data || "") };
    return { ok: false, status: response.status, problem };
  } catch (error) {
    const detail = error.name === "AbortError" ? `no answer within ${DEADLINE_MS / 1000} s` : String(error.message || error);
    return { ok: false, status: 0, problem: { title: "network", detail } };
  } finally {
    clearTimeout(timer);
  }
}

// "403 ops.forbidden: a viewer may not act" from a problem+json body.
export function describe(problem, status) {
  const head = [status || problem.status, problem.code || problem.title].filter(Boolean).join(" ");
  return problem.detail ? `${head}: ${problem.detail}` : head || "error";
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  return search.toString();
}
