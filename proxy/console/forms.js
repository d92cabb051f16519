// Forms generated from the gateway's catalogue (GET /_console/api/catalogue): one input per
// setting of the chosen service and task; secrets are password inputs and are never filled in.
import { h } from "./dom.js";

const JSON_KINDS = new Set(["map", "list", "str_or_object"]);

export function settingsForm(spec, task, { models = [], onInput = null, update = false, current = null } = {}) {
  const inputs = [];
  const secretNames = new Set();
  const applies = (s) => !s.tasks || s.tasks.includes(task);

  function field(scope, setting, path, value) {
    let input;
    let extra = null;
    const id = `f-${scope}-${path.join("-")}`;
    const attrs = { id, name: path.join("."), "data-kind": setting.kind, autocomplete: "off", spellcheck: "false" };
    if (setting.secret) {
      secretNames.add(setting.name);
      input = h("input", { ...attrs, type: "password", autocomplete: "new-password",
        placeholder: update ? "unchanged (type to replace)" : "" });
    } else if (setting.choices) {
      input = h("select", attrs, h("option", { value: "" }, setting.required ? "choose…" : "(default)"),
        setting.choices.map((c) => h("option", { value: c }, c)));
    } else if (setting.kind === "bool") {
      input = h("select", attrs, h("option", { value: "" }, "(default)"),
        h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    } else if (setting.kind === "int" || setting.kind === "float") {
      input = h("input", { ...attrs, type: "number", step: setting.kind === "int" ? "1" : "any",
        min: setting.positive ? "1" : null });
    } else if (JSON_KINDS.has(setting.kind) || setting.kind === "object") {
      input = h("textarea", { ...attrs, rows: 3, placeholder: setting.kind === "list" ? "JSON array" : "JSON" });
    } else {
      input = h("input", { ...attrs, type: "text" });
      if (setting.name === "model_id" && models.length) {
        extra = h("datalist", { id: id + "-models" }, models.map((m) => h("option", { value: m.model_id })));
        input.setAttribute("list", extra.id);
      }
    }
    if (value !== undefined && value !== null && !setting.secret) {
      input.value = typeof value === "object" ? JSON.stringify(value) : String(value);
    }
    if (setting.default !== undefined && !input.value && input.tagName === "INPUT" && !setting.secret) {
      input.placeholder = `default: ${typeof setting.default === "object" ? JSON.stringify(setting.default) : setting.default}`;
    }
    if (onInput) input.addEventListener("input", onInput);
    if (onInput) input.addEventListener("change", onInput);
    inputs.push({ scope, path, input, setting, initial: input.value });
    return h("label", { class: "field" },
      h("span", { class: "label" }, setting.name, setting.required && !update ? h("span", { class: "req" }, "*") : null,
        setting.secret ? h("span", { class: "hint" }, "secret, never shown back") : null),
      input, extra);
  }

  function group(scope, title, settings, currentValues) {
    const shown = settings.filter(applies).filter((s) => !update || scope === "task_settings" || s.updatable)
      .sort((a, b) => (update ? 0 : b.required - a.required)); // required first, then catalogue order
    if (!shown.length) return null;
    const nodes = shown.map((s) => {
      const value = currentValues ? currentValues[s.name] : undefined;
      if (s.kind === "object" && s.fields) {
        return h("fieldset", {}, h("legend", {}, s.name),
          h("div", { class: "grid2" }, s.fields.map((f) => field(scope, f, [s.name, f.name], value ? value[f.name] : undefined))));
      }
      return field(scope, s, [s.name], value);
    });
    return h("div", {}, h("h3", {}, title), h("div", { class: "grid2" }, nodes));
  }

  const element = h("div", { class: "settings" },
    update ? null : (spec.one_of || []).map((names) => h("p", { class: "muted small", "data-one-of": names.join(",") },
      "Give exactly one of ", names.map((n, i) => [i ? ", " : "", h("code", {}, n)]), ".")),
    group("service_settings", "Service settings", spec.service_settings, current && current.service_settings),
    group("task_settings", "Task settings", spec.task_settings, current && current.task_settings));
  return { element, inputs, secretNames, update };
}

// The request body from a form: empty inputs are left out; on update, so are unchanged ones.
export function collect(form) {
  const out = {};
  for (const { scope, path, input, setting, initial } of form.inputs) {
    const raw = input.value.trim();
    if (raw === "" || (form.update && raw === initial)) continue;
    let value = raw;
    if (setting.kind === "int") value = parseInt(raw, 10);
    else if (setting.kind === "float") value = parseFloat(raw);
    else if (setting.kind === "bool" && !setting.choices) value = raw === "true";
    else if (JSON_KINDS.has(setting.kind) || (setting.kind === "object" && path.length === 1)) {
      try { value = JSON.parse(raw); } catch { throw new Error(`[${path.join(".")}] is not valid JSON`); }
    }
    if (typeof value === "number" && Number.isNaN(value)) throw new Error(`[${path.join(".")}] is not a number`);
    const target = (out[scope] ||= {});
    if (path.length === 2) (target[path[0]] ||= {})[path[1]] = value;
    else target[path[0]] = value;
  }
  return out;
}
