// The console's shell: who is signed in, the page router (#/endpoints, #/playground/<id>, #/metrics).
import { ApiError, get, keyStore } from "./api.js";
import { clear, h } from "./dom.js";
import * as endpoints from "./endpoints.js";
import * as metrics from "./metrics.js";
import * as playground from "./playground.js";

const PAGES = { endpoints, playground, metrics };
const main = document.getElementById("main");
const ctx = { session: null, catalogue: null };
let unmount = null;

ctx.getCatalogue = async () => {
  if (!ctx.catalogue) ctx.catalogue = await get("_console/api/catalogue");
  return ctx.catalogue;
};

async function start() {
  let session;
  try {
    session = await get("_console/api/session");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signIn(keyStore.get() ? "That key was not accepted." : "");
    return fatal(err);
  }
  ctx.session = session;
  ctx.catalogue = null;
  document.body.classList.toggle("admin", session.admin);
  document.getElementById("nav").hidden = false;
  const who = document.getElementById("who");
  who.hidden = false;
  document.getElementById("who-name").textContent = session.auth ? session.name : "open on loopback";
  const roles = session.auth ? session.roles.join(", ") || "API key" : "no API keys";
  document.getElementById("who-role").textContent = roles;
  document.getElementById("sign-out").hidden = !session.auth;
  route();
}

function signIn(error) {
  keyStore.clear();
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off",
    placeholder: "the key printed by `inference-proxy keys create`", required: true });
  const form = h("form", { class: "card signin", id: "signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Use an API key of this gateway. It stays in this tab only and is sent as ",
      h("code", {}, "Authorization: ApiKey"), "."),
    error ? h("div", { class: "error-box", role: "alert" }, error) : null,
    h("label", { class: "field" }, h("span", { class: "label" }, "API key"), input),
    h("button", { class: "btn primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    keyStore.set(input.value.trim());
    start();
  });
  stopPage();
  clear(main, form);
  input.focus();
}

function fatal(err) {
  stopPage();
  clear(main, h("div", { class: "card signin" }, h("h1", {}, "The console cannot open"),
    h("div", { class: "error-box", role: "alert" }, err.message || String(err))));
}

function stopPage() {
  if (unmount) { try { unmount(); } catch { /* page already gone */ } }
  unmount = null;
}

function route() {
  if (!ctx.session) return;
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = PAGES[name] ? name : "endpoints";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  stopPage();
  clear(main);
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : "";
  unmount = PAGES[page].mount(main, ctx, arg) || null;
}

document.getElementById("sign-out").addEventListener("click", () => { ctx.session = null; signIn(""); });
window.addEventListener("hashchange", route);
ctx.onUnauthorized = () => signIn("The key is no longer accepted.");
start();
