// Playground: try an endpoint with the form its task needs, through the Elasticsearch routes.
import { api, ApiError, get, sse } from "./api.js";
import { bars, heatMap } from "./charts.js";
import { append, clear, fmt, h } from "./dom.js";
import { modelOf } from "./endpoints.js";

const SAMPLES = ["The cat sits on the mat.", "A kitten is resting on a rug.",
  "Stock markets fell sharply today.", "Interest rates rose again this quarter."];
const RERANK_DOCS = ["Paris is the capital and largest city of France.", "The Eiffel Tower was finished in 1889.",
  "Berlin is the capital of Germany.", "France borders Spain, Italy and Germany."];

export function mount(main, ctx, selected) {
  const list = h("nav", { class: "card pg-list", "aria-label": "Endpoints" }, h("div", { class: "empty" }, "Loading…"));
  const pane = h("section", { class: "card pg-main", id: "playground" });
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Playground")), h("div", { class: "pg-layout" }, list, pane));
  const controller = new AbortController();

  (async () => {
    let endpoints, catalogue;
    try {
      [endpoints, catalogue] = await Promise.all([get("_inference/_all").then((r) => r.endpoints), ctx.getCatalogue()]);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return ctx.onUnauthorized();
      return clear(pane, h("div", { class: "error-box" }, err.message));
    }
    clear(list);
    const byTask = {};
    for (const ep of endpoints) (byTask[ep.task_type] ||= []).push(ep);
    for (const task of Object.keys(byTask).sort()) {
      list.append(h("h3", {}, task), ...byTask[task].map((ep) => h("a", {
        href: "#/playground/" + encodeURIComponent(ep.inference_id), title: ep.inference_id,
        class: ep.inference_id === selected ? "active" : null }, ep.inference_id)));
    }
    if (!endpoints.length) list.append(h("div", { class: "empty" }, "No endpoint yet."));
    const ep = endpoints.find((e) => e.inference_id === selected);
    if (!ep) {
      pane.append(h("div", { class: "empty" }, endpoints.length ? "Pick an endpoint on the left to try it." : "Create an endpoint first."));
      return;
    }
    const spec = catalogue.services.find((s) => s.name === ep.service) || { streaming: [] };
    append(pane, [h("div", { class: "pg-head" }, h("h2", { class: "mono" }, ep.inference_id),
      h("span", { class: "badge task" }, ep.task_type), h("span", { class: "badge" }, ep.service),
      modelOf(ep) ? h("span", { class: "muted mono small" }, modelOf(ep)) : null)]);
    const tasks = { chat_completion: chat, completion: chat, text_embedding: embeddings, embedding: embeddings,
      sparse_embedding: sparse, rerank };
    const run = tasks[ep.task_type];
    if (run) run(pane, ep, spec, controller.signal);
    else pane.append(h("div", { class: "empty" }, `No playground for ${ep.task_type} yet.`));
  })();
  return () => controller.abort();
}

function errorBox(err) {
  return h("div", { class: "msg error", role: "alert" }, err.message || String(err));
}

// ------------------------------------------------------------------------------ chat and completion

function chat(pane, ep, spec, pageSignal) {
  const isChat = ep.task_type === "chat_completion";
  const streams = spec.streaming.includes(ep.task_type);
  const history = [];
  const transcript = h("div", { class: "transcript", id: "transcript" });
  const prompt = h("textarea", { id: "prompt", rows: 2, placeholder: isChat ? "Send a message…" : "A prompt to complete…" });
  const send = h("button", { class: "btn primary", type: "submit", id: "send" }, "Send");
  const stop = h("button", { class: "btn", type: "button", id: "stop", hidden: true }, "Stop");
  const stats = h("div", { class: "stats", id: "stats" });
  const form = h("form", { class: "composer" }, prompt, h("div", { class: "row" }, stop, send));
  pane.append(transcript, form, stats);
  let running = null;

  prompt.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } });
  stop.addEventListener("click", () => running && running.abort());
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = prompt.value.trim();
    if (!text || running) return;
    prompt.value = "";
    transcript.append(h("div", { class: "msg user" }, text));
    const out = h("div", { class: "msg assistant streaming", id: "answer-" + history.length });
    transcript.append(out);
    transcript.scrollTop = transcript.scrollHeight;
    running = new AbortController();
    pageSignal.addEventListener("abort", () => running && running.abort());
    send.disabled = true;
    stop.hidden = !streams;
    const started = performance.now();
    let first = null, chunks = 0, usage = null, answer = "";
    const show = () => {
      const now = performance.now();
      clear(stats,
        stat("time to first token", first === null ? "–" : `${fmt(first - started, 0)} ms`, "ttft"),
        stat("total", `${fmt(now - started, 0)} ms`, "total"),
        stat(streams ? "chunks" : "mode", streams ? String(chunks) : "not streamed", "chunks"),
        streams && first !== null && chunks > 1 ? stat("chunks/s", fmt((chunks - 1) / ((now - first) / 1000), 1), "rate") : null,
        usage ? stat("tokens in / out", `${usage.prompt_tokens ?? "–"} / ${usage.completion_tokens ?? "–"}`, "usage") : null);
    };
    const messages = [...history, { role: "user", content: text }];
    try {
      if (streams) {
        const body = isChat ? { messages } : { input: text };
        const path = `_inference/${ep.task_type}/${encodeURIComponent(ep.inference_id)}/_stream`;
        for await (const frame of sse(path, body, { signal: running.signal })) {
          if (frame.data === "[DONE]") break;
          const data = JSON.parse(frame.data);
          if (frame.event === "error") throw new ApiError(500, data);
          const piece = isChat ? ((data.choices || [])[0] || {}).delta?.content : (data.completion || [])[0]?.delta;
          if (data.usage) usage = data.usage;
          if (piece) {
            if (first === null) first = performance.now();
            chunks++;
            answer += piece;
            out.textContent = answer;
            transcript.scrollTop = transcript.scrollHeight;
          }
          show();
        }
      } else {
        const result = isChat
          ? await api("POST", `_inference/chat_completion/${encodeURIComponent(ep.inference_id)}`, { messages }, { signal: running.signal })
          : await api("POST", `_inference/completion/${encodeURIComponent(ep.inference_id)}`, { input: text }, { signal: running.signal });
        first = performance.now();
        answer = isChat ? result.choices[0].message.content || "" : result.completion[0].result;
        usage = result.usage || null;
        out.textContent = answer;
      }
      if (isChat) history.push({ role: "user", content: text }, { role: "assistant", content: answer });
    } catch (err) {
      if (err.name === "AbortError") out.textContent = answer + " [stopped]";
      else { out.remove(); transcript.append(errorBox(err)); }
    } finally {
      out.classList.remove("streaming");
      out.dataset.done = "true";
      show();
      running = null;
      send.disabled = false;
      stop.hidden = true;
    }
  });
}

function stat(label, value, key) {
  return h("span", { "data-stat": key }, label + " ", h("b", {}, value));
}

// ------------------------------------------------------------------------------ embeddings

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

function embeddings(pane, ep) {
  const input = h("textarea", { id: "inputs", rows: 5 });
  input.value = SAMPLES.join("\n");
  const run = h("button", { class: "btn primary", type: "button", id: "run" }, "Embed");
  const result = h("div", { class: "result", id: "result" });
  pane.append(h("label", { class: "field" }, h("span", { class: "label" }, "Inputs", h("span", { class: "hint" }, "one per line")), input),
    h("div", { class: "row" }, run), result);
  run.addEventListener("click", async () => {
    const texts = input.value.split("\n").map((t) => t.trim()).filter(Boolean);
    if (!texts.length) return;
    run.disabled = true;
    clear(result, h("p", { class: "muted" }, "Embedding…"));
    const started = performance.now();
    try {
      const answer = await api("POST", `_inference/${ep.task_type}/${encodeURIComponent(ep.inference_id)}`, { input: texts });
      const elapsed = performance.now() - started;
      const key = Object.keys(answer)[0];
      const vectors = answer[key].map((item) => item.embedding);
      const matrix = vectors.map((a) => vectors.map((b) => cosine(a, b)));
      clear(result,
        h("div", { class: "stats" }, stat("vectors", String(vectors.length), "count"),
          stat("dimensions", String(vectors[0].length), "dims"), stat("type", key, "type"),
          stat("time", `${fmt(elapsed, 0)} ms`, "time")),
        h("h3", {}, "Cosine similarity"), heatMap(matrix, texts),
        h("h3", {}, "First values"),
        h("pre", { class: "json" }, vectors.map((v, i) => {
          const head = v.slice(0, 8).map((x) => Number(x).toFixed(4)).join(", ");
          return `#${i + 1} [${head}${v.length > 8 ? ", …" : ""}]`;
        }).join("\n")));
    } catch (err) {
      clear(result, errorBox(err));
    } finally {
      run.disabled = false;
    }
  });
}

// ------------------------------------------------------------------------------ sparse embedding

function sparse(pane, ep) {
  const input = h("textarea", { id: "inputs", rows: 3 });
  input.value = "The quick brown fox jumps over the lazy dog.";
  const run = h("button", { class: "btn primary", type: "button", id: "run" }, "Expand");
  const result = h("div", { class: "result", id: "result" });
  pane.append(h("label", { class: "field" }, h("span", { class: "label" }, "Input"), input), h("div", { class: "row" }, run), result);
  run.addEventListener("click", async () => {
    run.disabled = true;
    try {
      const answer = await api("POST", `_inference/sparse_embedding/${encodeURIComponent(ep.inference_id)}`, { input: [input.value] });
      const item = answer.sparse_embedding[0];
      const tokens = Object.entries(item.embedding).sort((a, b) => b[1] - a[1]);
      clear(result,
        h("div", { class: "stats" }, stat("tokens", String(tokens.length), "count"),
          stat("truncated", String(item.is_truncated), "truncated")),
        h("h3", {}, `Top ${Math.min(25, tokens.length)} tokens`),
        bars(tokens.slice(0, 25).map(([name, value]) => ({ name, value }))));
    } catch (err) {
      clear(result, errorBox(err));
    } finally {
      run.disabled = false;
    }
  });
}

// ------------------------------------------------------------------------------ rerank

function rerank(pane, ep) {
  const query = h("input", { id: "query", value: "What is the capital of France?" });
  const docs = h("textarea", { id: "inputs", rows: 5 });
  docs.value = RERANK_DOCS.join("\n");
  const run = h("button", { class: "btn primary", type: "button", id: "run" }, "Rerank");
  const result = h("div", { class: "result", id: "result" });
  pane.append(h("label", { class: "field" }, h("span", { class: "label" }, "Query"), query),
    h("label", { class: "field" }, h("span", { class: "label" }, "Documents", h("span", { class: "hint" }, "one per line")), docs),
    h("div", { class: "row" }, run), result);
  run.addEventListener("click", async () => {
    const texts = docs.value.split("\n").map((t) => t.trim()).filter(Boolean);
    run.disabled = true;
    try {
      const answer = await api("POST", `_inference/rerank/${encodeURIComponent(ep.inference_id)}`, { query: query.value, input: texts });
      clear(result, h("h3", {}, "Relevance"),
        bars(answer.rerank.map((r) => ({ name: `#${r.index + 1} ${texts[r.index]}`, value: r.relevance_score }))));
    } catch (err) {
      clear(result, errorBox(err));
    } finally {
      run.disabled = false;
    }
  });
}
