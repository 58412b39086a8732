// The console's only way to the server: the public /auth/v1 and /v1 API, as any client.
// The session (access and refresh token) lives in sessionStorage: it ends with the tab.

const SESSION_KEY = "syntera.console.session";
let session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
let refreshing = null;

/** An answer of the API that is not a success, with its problem+json in words. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(describeProblem(status, problem));
    this.status = status;
    this.problem = problem;
  }
}

/** The words of a problem+json (RFC 9457) or a Supabase Auth error body. */
export function describeProblem(status, problem) {
  if (!problem || typeof problem !== "object") return `The server answered ${status}.`;
  const main = problem.detail || problem.msg || problem.error_description || problem.message
    || problem.title || `The server answered ${status}.`;
  const fields = Array.isArray(problem.errors) ? problem.errors : [];
  const named = fields.map((e) => {
    const where = e.field || (Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body").join(".") : "");
    const what = e.message || e.msg || "";
    return where ? `${where}: ${what}` : what;
  }).filter(Boolean);
  return named.length ? `${main} (${named.join("; ")})` : main;
}

function store(next) {
  session = next;
  if (next) sessionStorage.setItem(SESSION_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(SESSION_KEY);
}

export function signedIn() {
  return session !== null;
}

export function currentUser() {
  return session ? session.user : null;
}

/** Keep ``user`` (as PUT /auth/v1/user answers it) as the signed-in user. */
export function rememberUser(user) {
  if (session) store({ ...session, user });
}

function withExpiry(answer) {
  return { ...answer, expires_at_ms: Date.now() + answer.expires_in * 1000 };
}

async function authCall(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer;
}

/** Sign in with email and password (Supabase Auth's password grant). */
export async function signIn(email, password) {
  const answer = await authCall("/auth/v1/token?grant_type=password", { email, password });
  store(withExpiry(answer));
  return answer.user;
}

/** Sign out: the refresh token is revoked on the server, the session forgotten here. */
export async function signOut() {
  const token = session && session.access_token;
  store(null);
  if (token) {
    await fetch("/auth/v1/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } })
      .catch(() => undefined);
  }
}

async function refresh() {
  if (!session) throw new ApiError(401, { detail: "You are signed out." });
  if (!refreshing) {
    refreshing = authCall("/auth/v1/token?grant_type=refresh_token", {
      refresh_token: session.refresh_token,
    }).then((answer) => store(withExpiry(answer)))
      .catch((error) => { store(null); throw error; })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** A current access token, refreshed when it has less than a minute left. */
export async function accessToken() {
  if (!session) throw new ApiError(401, { detail: "You are signed out." });
  if (session.expires_at_ms - Date.now() < 60_000) await refresh();
  return session.access_token;
}

function url(path, query) {
  const target = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
  }
  return target.pathname + target.search;
}

/** Call the API: JSON in (``json``) or a form (``form``), JSON out (null for 204). A 401
 * refreshes the session once and tries again. */
export async function api(method, path, { json, form, query } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = { Authorization: `Bearer ${await accessToken()}` };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    const response = await fetch(url(path, query), { method, headers, body });
    if (response.status === 401 && attempt === 0) {
      await refresh();
      continue;
    }
    if (response.status === 204) return null;
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, answer);
    return answer;
  }
}

/** Upload ``form`` with a progress callback (fetch cannot report upload progress). */
export async function upload(path, form, onProgress) {
  const token = await accessToken();
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.setRequestHeader("Authorization", `Bearer ${token}`);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    request.onload = () => {
      let answer = null;
      try { answer = JSON.parse(request.responseText); } catch { answer = null; }
      if (request.status >= 200 && request.status < 300) resolve(answer);
      else reject(new ApiError(request.status, answer));
    };
    request.onerror = () => reject(new ApiError(0, { detail: "The upload did not reach the server." }));
    request.send(form);
  });
}

// The named events the console listens to (an EventSource hears only the names it asks
// for); a name the server never sends costs nothing.
const EVENT_TYPES = ["conversation.started", "conversation.updated", "conversation.ended",
  "conversation.archived", "message.created", "message.updated", "message.reaction",
  "message.read", "message.delta", "typing", "note.created", "note.deleted"];

/** Follow a Server-Sent Events stream of the API (``/v1/events``). EventSource cannot send
 * headers, so the token travels as ``access_token=``; when the stream closes (the token
 * expired, the server restarted) it is opened again with a fresh token, resuming after
 * the last event received. Returns a function that stops following. */
export function follow(path, query, onEvent, onState = () => undefined) {
  let source = null;
  let lastId = null;
  let stopped = false;
  let retry = 1000;

  async function open() {
    if (stopped) return;
    let token;
    try {
      token = await accessToken();
    } catch (error) {
      onState("closed", error);
      return;
    }
    source = new EventSource(url(path, { ...query, access_token: token, last_event_id: lastId }));
    source.onopen = () => { retry = 1000; onState("open"); };
    source.onmessage = handle;
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, handle);
    }
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED && !stopped) {
        onState("reconnecting");
        setTimeout(open, retry);
        retry = Math.min(retry * 2, 30_000);
      }
    };
  }

  function handle(message) {
    if (message.lastEventId) lastId = message.lastEventId;
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    onEvent(event);
  }

  open();
  return () => {
    stopped = true;
    if (source) source.close();
  };
}
