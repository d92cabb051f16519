// Calls to the gateway with the signed-in key. The key lives in this tab's sessionStorage only
// and is sent as `Authorization: ApiKey <key>`, as the Elasticsearch clients send it.

const STORAGE = "inference-proxy.api-key";
// the gateway's root, relative to this page (/_console/), so a path prefix in front of it still works
const ROOT = new URL("../", location.href);

export const keyStore = {
  get: () => sessionStorage.getItem(STORAGE),
  set: (key) => sessionStorage.setItem(STORAGE, key),
  clear: () => sessionStorage.removeItem(STORAGE),
};

export class ApiError extends Error {
  constructor(status, body) {
    super(reasonOf(body) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function reasonOf(body) {
  if (!body) return "";
  if (typeof body === "string") return body;
  const err = body.error;
  if (typeof err === "string") return err;
  if (err && typeof err === "object") {
    const root = (err.root_cause || [])[0];
    return err.reason || err.message || (root && root.reason) || JSON.stringify(err);
  }
  return JSON.stringify(body);
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const key = keyStore.get();
  if (key) out.Authorization = "ApiKey " + key;
  return out;
}

export function url(path) {
  return new URL(path.replace(/^\//, ""), ROOT).toString();
}

export async function api(method, path, body, { signal } = {}) {
  const init = { method, headers: headers(), signal, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url(path), init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path, opts) => api("GET", path, undefined, opts);

// POST and read Server-Sent Events as they arrive (EventSource cannot POST or send a header).
// Elasticsearch writes a byte-order mark before each `event:` line; it is dropped here.
export async function* sse(path, body, { signal } = {}) {
  const res = await fetch(url(path), {
    method: "POST", signal, credentials: "omit", cache: "no-store",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    const text = await res.text();
    let data = text;
    try { data = JSON.parse(text); } catch { /* not JSON */ }
    if (typeof data === "string") {
      const frame = parseFrame(data.replace(/\uFEFF/g, ""));
      if (frame.data) { try { data = JSON.parse(frame.data); } catch { /* keep text */ } }
    }
    throw new ApiError(res.status, data);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\uFEFF/g, "");
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const raw = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const frame = parseFrame(raw);
      if (frame.data !== null) yield frame;
    }
  }
}

function parseFrame(raw) {
  let event = "message";
  const data = [];
  for (const line of raw.split(/\r?\n/)) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { event, data: data.length ? data.join("\n") : null };
}
