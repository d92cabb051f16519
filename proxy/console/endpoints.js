// Endpoints: the list with each endpoint's state, and (for admin keys) create, _update and delete.
import { api, ApiError, get } from "./api.js";
import { clear, h, toast } from "./dom.js";
import { collect, settingsForm } from "./forms.js";

// the first of these service settings that names a model, for the list's "model" column
const MODEL_KEYS = ["model_id", "model", "model_name", "endpoint_name", "deployment_id", "service_id", "url"];
const POLL_MS = 3000;

export function mount(main, ctx) {
  const admin = ctx.session.admin;
  const filter = h("input", { type: "search", placeholder: "Filter by id, service, task or model", class: "filter",
    "aria-label": "Filter endpoints" });
  const body = h("div", { class: "card", id: "endpoint-list" }, h("div", { class: "empty" }, "Loading…"));
  const banner = h("div", { class: "card banner", hidden: true, id: "local-models" });
  main.append(
    h("div", { class: "page-head" },
      h("h1", {}, "Endpoints"), h("span", { class: "badge", id: "endpoint-count" }, "…"),
      h("div", { class: "spacer" }),
      h("div", { class: "row" }, filter,
        admin ? h("button", { class: "btn primary", id: "new-endpoint", type: "button",
          onclick: () => createDialog(ctx, refresh) }, "New endpoint") : null)),
    banner, body);

  let endpoints = [];
  let states = {};
  let timer = null;
  let alive = true;

  async function refresh() {
    try {
      const [list, status] = await Promise.all([get("_inference/_all"), get("_console/api/status")]);
      endpoints = list.endpoints;
      states = status.endpoints;
      renderBanner(banner, status.local_models);
      render();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return ctx.onUnauthorized();
      clear(body, h("div", { class: "error-box" }, err.message));
    }
  }

  function render() {
    const q = filter.value.trim().toLowerCase();
    const shown = endpoints.filter((ep) => !q || [ep.inference_id, ep.service, ep.task_type, modelOf(ep)]
      .some((v) => String(v || "").toLowerCase().includes(q)));
    document.getElementById("endpoint-count").textContent = String(endpoints.length);
    clear(body);
    if (!shown.length) {
      body.append(h("div", { class: "empty" }, endpoints.length ? "No endpoint matches the filter."
        : admin ? "No endpoint yet: create one with “New endpoint”." : "No endpoint yet."));
      return;
    }
    const rows = shown.map((ep) => {
      const state = states[ep.inference_id] || { state: "ready" };
      const fixed = ep.inference_id.startsWith(".");
      return h("tr", { dataset: { id: ep.inference_id } },
        h("td", {}, h("span", { class: "mono" }, ep.inference_id)),
        h("td", {}, ep.service),
        h("td", {}, h("span", { class: "badge task" }, ep.task_type)),
        h("td", { class: "mono small" }, modelOf(ep) || h("span", { class: "muted" }, "–")),
        h("td", {}, stateCell(state)),
        h("td", { class: "actions" },
          h("a", { class: "btn link", href: "#/playground/" + encodeURIComponent(ep.inference_id) }, "Try"),
          admin && !fixed ? h("button", { class: "btn link", type: "button", "data-action": "edit",
            onclick: () => updateDialog(ctx, ep, refresh) }, "Edit") : null,
          admin && !fixed ? h("button", { class: "btn link danger-text", type: "button", "data-action": "delete",
            onclick: () => deleteDialog(ep, refresh) }, "Delete") : null));
    });
    body.append(h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["Inference ID", "Service", "Task", "Model", "Status", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
  }

  filter.addEventListener("input", render);
  const tick = async () => {
    await refresh();
    if (alive) timer = setTimeout(tick, POLL_MS);
  };
  tick();
  return () => { alive = false; clearTimeout(timer); };
}

export function modelOf(ep) {
  const ss = ep.service_settings || {};
  const key = MODEL_KEYS.find((k) => typeof ss[k] === "string" && ss[k]);
  return key ? ss[key] : "";
}

function stateCell(state) {
  const cell = [h("span", { class: "badge chip " + state.state, "data-state": state.state }, state.state)];
  const details = Object.entries(state).filter(([k]) => k !== "state");
  const line = details.filter(([, v]) => typeof v !== "object").map(([k, v]) =>
    k === "load_seconds" ? `loaded in ${Number(v).toFixed(1)} s` : `${k.replace(/_/g, " ")}: ${v}`).join(" · ");
  if (line) cell.push(h("div", { class: "detail" }, line));
  // structured details (a router's targets and their breakers) as a small table
  for (const [key, value] of details) {
    if (Array.isArray(value) && value.length && typeof value[0] === "object") {
      const cols = Object.keys(value[0]);
      cell.push(h("table", { class: "mini", "data-detail": key },
        h("tr", {}, cols.map((c) => h("th", {}, c))),
        value.map((row) => h("tr", { "data-target": row.target }, cols.map((c) => h("td", {},
          c === "breaker" ? h("span", { class: "badge chip " + row[c], "data-breaker": row[c] }, row[c])
            : String(row[c] ?? "")))))));
    }
  }
  return cell;
}

function renderBanner(banner, local) {
  if (!local || !local.total) { banner.hidden = true; return; }
  banner.hidden = false;
  const done = local.ready;
  const bar = h("div");
  bar.style.width = `${Math.round((100 * done) / local.total)}%`;
  clear(banner, h("strong", {}, "Local models"),
    h("div", { class: "progress", title: `${done} of ${local.total} loaded` }, bar),
    h("span", { class: "muted" }, `${done} of ${local.total} loaded` + (local.loading ? `, ${local.loading} loading` : "")));
}

// ------------------------------------------------------------------------------ dialogs

function dialog(title, content, buttons) {
  const error = h("div", { class: "error-box", role: "alert", hidden: true });
  const dlg = h("dialog", { "aria-label": title },
    h("div", { class: "dialog-head" }, h("h2", {}, title),
      h("button", { class: "btn ghost small", type: "button", onclick: () => dlg.close() }, "Close")),
    h("div", { class: "dialog-body" }, error, content),
    h("div", { class: "dialog-foot" }, buttons));
  dlg.addEventListener("close", () => dlg.remove());
  dlg.showError = (message) => { error.textContent = message; error.hidden = !message; };
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

async function createDialog(ctx, done) {
  const catalogue = await ctx.getCatalogue();
  const services = catalogue.services.filter((s) => !s.deprecation);
  const service = h("select", { id: "f-service", name: "service" },
    h("optgroup", { label: "Providers" }, services.filter((s) => !s.local).map((s) => h("option", { value: s.name }, s.name))),
    h("optgroup", { label: "Local models" }, services.filter((s) => s.local).map((s) => h("option", { value: s.name }, s.name))));
  const task = h("select", { id: "f-task", name: "task_type" });
  const id = h("input", { id: "f-id", name: "inference_id", required: true, placeholder: "my-endpoint",
    autocomplete: "off", spellcheck: "false" });
  const settings = h("div");
  const preview = h("pre", { class: "json", id: "f-preview" });
  let form = null;

  const spec = () => catalogue.services.find((s) => s.name === service.value);
  function rebuildTasks() {
    const current = task.value;
    clear(task, ...spec().tasks.map((t) => h("option", { value: t }, t)));
    if (spec().tasks.includes(current)) task.value = current;
    rebuildSettings();
  }
  function rebuildSettings() {
    const models = spec().local ? catalogue.local_models.filter((m) => m.tasks.includes(task.value)) : [];
    form = settingsForm(spec(), task.value, { models, onInput: showPreview });
    clear(settings, form.element);
    showPreview();
  }
  function body() {
    const out = { service: service.value, ...collect(form) };
    return out;
  }
  function showPreview() {
    try {
      preview.textContent = JSON.stringify(body(), (k, v) => (form.secretNames.has(k) && v ? "••••••" : v), 2);
    } catch (err) {
      preview.textContent = err.message;
    }
  }
  service.addEventListener("change", rebuildTasks);
  task.addEventListener("change", rebuildSettings);
  id.addEventListener("input", showPreview);
  service.value = services.some((s) => s.name === "openai") ? "openai" : services[0].name;

  const submit = h("button", { class: "btn primary", type: "button", id: "f-create" }, "Create endpoint");
  const dlg = dialog("New inference endpoint", [
    h("div", { class: "grid2" },
      h("label", { class: "field" }, h("span", { class: "label" }, "Service"), service),
      h("label", { class: "field" }, h("span", { class: "label" }, "Task type"), task)),
    h("label", { class: "field" }, h("span", { class: "label" }, "Inference ID", h("span", { class: "req" }, "*")), id),
    settings,
    h("h3", {}, "Request (secrets masked)"), preview,
  ], [h("button", { class: "btn", type: "button", onclick: () => dlg.close() }, "Cancel"), submit]);
  rebuildTasks();

  submit.addEventListener("click", async () => {
    dlg.showError("");
    let payload;
    try { payload = body(); } catch (err) { return dlg.showError(err.message); }
    if (!id.value.trim()) return dlg.showError("An inference ID is required.");
    submit.disabled = true;
    try {
      await api("PUT", `_inference/${encodeURIComponent(task.value)}/${encodeURIComponent(id.value.trim())}`, payload);
      dlg.close();
      toast(`Created ${id.value.trim()}`);
      done();
    } catch (err) {
      dlg.showError(err.message);
    } finally {
      submit.disabled = false;
    }
  });
}

async function updateDialog(ctx, ep, done) {
  const catalogue = await ctx.getCatalogue();
  const spec = catalogue.services.find((s) => s.name === ep.service);
  const form = settingsForm(spec, ep.task_type, { update: true, current: ep });
  const submit = h("button", { class: "btn primary", type: "button", id: "f-update" }, "Save changes");
  const dlg = dialog(`Update ${ep.inference_id}`, [
    h("p", { class: "muted" }, "Only settings that ", h("code", {}, "_update"), " accepts are shown. ",
      "Secret fields are empty: leave them so to keep the stored value."),
    form.element,
  ], [h("button", { class: "btn", type: "button", onclick: () => dlg.close() }, "Cancel"), submit]);
  submit.addEventListener("click", async () => {
    dlg.showError("");
    let payload;
    try { payload = collect(form); } catch (err) { return dlg.showError(err.message); }
    delete payload.chunking_settings;
    submit.disabled = true;
    try {
      await api("PUT", `_inference/${encodeURIComponent(ep.task_type)}/${encodeURIComponent(ep.inference_id)}/_update`, payload);
      dlg.close();
      toast(`Updated ${ep.inference_id}`);
      done();
    } catch (err) {
      dlg.showError(err.message);
    } finally {
      submit.disabled = false;
    }
  });
}

async function deleteDialog(ep, done) {
  const path = `_inference/${encodeURIComponent(ep.task_type)}/${encodeURIComponent(ep.inference_id)}`;
  const answer = h("pre", { class: "json", id: "dry-run" }, "Asking the gateway (dry_run=true)…");
  const confirm = h("button", { class: "btn danger", type: "button", id: "f-delete", disabled: true }, "Delete endpoint");
  const dlg = dialog(`Delete ${ep.inference_id}?`, [
    h("p", {}, "The gateway's answer to ", h("code", {}, `DELETE /${path}?dry_run=true`),
      ", which changes nothing:"), answer,
  ], [h("button", { class: "btn", type: "button", onclick: () => dlg.close() }, "Cancel"), confirm]);
  try {
    answer.textContent = JSON.stringify(await api("DELETE", path + "?dry_run=true"), null, 2);
    confirm.disabled = false;
  } catch (err) {
    answer.textContent = "";
    dlg.showError(err.message);
  }
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    try {
      await api("DELETE", path);
      dlg.close();
      toast(`Deleted ${ep.inference_id}`);
      done();
    } catch (err) {
      dlg.showError(err.message);
      confirm.disabled = false;
    }
  });
}
