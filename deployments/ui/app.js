// The blender-serve playground: plain JS over the public HTTP API (GET /v1/models,
// POST /v1/chat/completions with the `blender` options), nothing fetched from elsewhere.
// Streamed answers ask for stream_options.include_provenance: the candidates, the pairwise
// matrix, the scores and the fusion decision show as soon as they are ranked, before the answer.
"use strict";

const $ = (id) => document.getElementById(id);
// The page lives at <app root>/ui/: the API is one level up (works under any route prefix).
const api = (path) => new URL("../" + path, location.href).toString();

const NUMBER_OPTIONS = ["top_k", "deadline_s", "auto_fusion_margin", "min_candidates", "quorum", "quorum_grace_s"];
const CHOICE_OPTIONS = ["strategy", "fusion", "on_ranker_failure"];
const STAGES = [["generate_s", "generate"], ["rank_s", "rank"], ["fuse_s", "fuse"]];

const KEY_STORE = "blender-serve.api_key";  // sessionStorage: gone when the tab closes

let running = null;  // {controller, timer, t0, firstPieceAt, rankedAt}

// -- small DOM helpers --------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
}

const secs = (s) => (s === undefined || s === null ? "–" : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
const num = (v, digits = 2) => (typeof v === "number" ? v.toFixed(digits) : "–");

function setStatus(state, text) {
  const status = $("status");
  status.className = "status " + state;
  status.textContent = text;
  document.body.dataset.state = state;
}

// The API key typed into the page (if the server needs one), sent as OpenAI clients send it.
function headers() {
  const key = $("api_key").value.trim();
  return key ? {"Content-Type": "application/json", "Authorization": `Bearer ${key}`}
             : {"Content-Type": "application/json"};
}

function keyChanged() {
  const key = $("api_key").value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
  loadModels();
}

// -- models -------------------------------------------------------------------------------------

async function loadModels() {
  try {
    document.body.dataset.models = "loading";
    const resp = await fetch(api("v1/models"), {headers: headers()});
    const body = await resp.json();
    if (resp.status === 401) throw new Error(errorMessage(body, resp.status) + " (enter the server's API key above)");
    if (!resp.ok) throw new Error(errorMessage(body, resp.status));
    const ensembles = body.data.filter((m) => m.kind === "ensemble");
    const bases = body.data.filter((m) => m.kind !== "ensemble");
    fill($("ensemble"), ensembles.map((m) => el("option", {value: m.id}, m.id)));
    fill($("models"), bases.map((m) => el("label", {class: "check"},
      el("input", {type: "checkbox", value: m.id, checked: true, "data-model": m.id}), m.id)));
    $("server").textContent = `${ensembles.length} ensemble, ${bases.length} base models at ${new URL(api("")).host}`;
    document.body.dataset.models = "ready";
  } catch (err) {
    $("server").textContent = "cannot list models: " + err.message;
    fill($("models"), el("span", {class: "error"}, err.message));
    document.body.dataset.models = "error";
  }
}

// -- the request --------------------------------------------------------------------------------

function buildRequest() {
  const blender = {};
  const models = [...document.querySelectorAll("#models input:checked")].map((i) => i.value);
  const all = document.querySelectorAll("#models input").length;
  if (models.length && models.length < all) blender.models = models;
  for (const name of NUMBER_OPTIONS) {
    const v = $(name).value.trim();
    if (v !== "") blender[name] = Number(v);
  }
  for (const name of CHOICE_OPTIONS) {
    if ($(name).value) blender[name] = $(name).value;
  }
  const request = {
    model: $("ensemble").value,
    messages: [{role: "user", content: $("prompt").value}],
    stream: $("stream").checked,
  };
  if (request.stream) request.stream_options = {include_usage: true, include_provenance: true};
  if ($("max_tokens").value.trim()) request.max_tokens = Number($("max_tokens").value);
  if ($("temperature").value.trim()) request.temperature = Number($("temperature").value);
  if (Object.keys(blender).length) request.blender = blender;
  return request;
}

function errorMessage(body, status) {
  const e = body && body.error;
  if (!e) return `HTTP ${status}`;
  let text = `${e.message}` + (e.param ? ` (${e.param})` : "");
  if (e.errors) text += "\n" + Object.entries(e.errors).map(([m, why]) => `  ${m}: ${why}`).join("\n");
  return `HTTP ${status} ${e.code || e.type || ""}: ${text}`;
}

async function ask(event) {
  if (event) event.preventDefault();
  if (running) running.controller.abort();
  if (!$("prompt").value.trim()) return;
  const request = buildRequest();
  resetResults();
  const run = {controller: new AbortController(), t0: performance.now(), firstPieceAt: null, rankedAt: null};
  running = run;
  const elapsed = () => (performance.now() - run.t0) / 1000;
  run.timer = setInterval(() => {
    if (running !== run) return;
    setStatus("running", run.firstPieceAt !== null
      ? `answer streaming in… ${elapsed().toFixed(1)} s (first piece at ${run.firstPieceAt.toFixed(2)} s)`
      : run.rankedAt !== null
        ? `ranked at ${run.rankedAt.toFixed(2)} s; waiting for the answer… ${elapsed().toFixed(1)} s`
        : `generating candidates, ranking, deciding on fusion… ${elapsed().toFixed(1)} s`);
  }, 100);
  setStatus("running", "sending…");
  $("ask").disabled = true;
  try {
    const resp = await fetch(api("v1/chat/completions"), {
      method: "POST", headers: headers(), body: JSON.stringify(request), signal: run.controller.signal});
    if (!resp.ok) {
      let body = null;
      try { body = await resp.json(); } catch (_) { /* not JSON */ }
      throw new Error(errorMessage(body, resp.status));
    }
    const onPiece = (text) => {
      if (run.firstPieceAt === null) run.firstPieceAt = elapsed();
      $("answer").textContent += text;
    };
    // The ranked candidates and the fusion decision, before the answer (streamed requests).
    const onProgress = (progress) => {
      run.rankedAt = elapsed();
      renderProgress(progress, {ranked_s: run.rankedAt});
    };
    let result;
    if (request.stream) {
      result = await readStream(resp, onPiece, onProgress);
    } else {
      const body = await resp.json();
      onPiece(body.choices[0].message.content);
      result = {provenance: body.blender, usage: body.usage, finish: body.choices[0].finish_reason};
    }
    const client = {ranked_s: run.rankedAt, first_piece_s: run.firstPieceAt, total_s: elapsed()};
    if (result.provenance) renderProvenance(result.provenance, client);
    renderUsage(result.usage, result.finish);
    setStatus("done", `done in ${secs(client.total_s)}` + (result.provenance ? "" : " (no provenance: a base model answered)"));
  } catch (err) {
    if (err.name === "AbortError") return;
    setStatus("error", err.message);
  } finally {
    clearInterval(run.timer);
    if (running === run) {
      running = null;
      $("ask").disabled = false;
    }
  }
}

// Server-sent events of a streamed chat completion: (include_provenance) a chunk with no choices
// whose `blender` object is the ranked progress, text deltas, then the chunk with the final
// `blender` provenance, then (include_usage) a usage chunk, then [DONE]; errors come in-band.
async function readStream(resp, onPiece, onProgress) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  const out = {provenance: null, usage: null, finish: null};
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(errorMessage(chunk, chunk.error.code || "in stream"));
      const choice = chunk.choices && chunk.choices[0];
      if (choice && choice.delta && choice.delta.content) onPiece(choice.delta.content);
      if (choice && choice.finish_reason) out.finish = choice.finish_reason;
      if (chunk.blender && chunk.blender.stage === "ranked") onProgress(chunk.blender);
      else if (chunk.blender) out.provenance = chunk.blender;
      if (chunk.usage) out.usage = chunk.usage;
    }
  }
  return out;
}

// -- rendering ----------------------------------------------------------------------------------

function resetResults() {
  delete document.body.dataset.progress;
  $("answer").textContent = "";
  fill($("fusion-badge"));
  $("fusion-badge").className = "badge";
  fill($("fusion-detail"));
  for (const id of ["timings", "candidates", "matrix"]) fill($(id), el("span", {class: "muted"}, "waiting…"));
  $("raw").textContent = "";
}

// What is known once the candidates are ranked: the view is completed by renderProvenance.
function renderProgress(progress, client) {
  const badge = $("fusion-badge");
  badge.textContent = progress.will_fuse ? "fusing…" : "not fused";
  badge.className = "badge " + (progress.will_fuse ? "pending" : "warn");
  const lines = [progress.will_fuse
    ? `Ranked: the fuser is writing the answer from the top ${progress.chosen.length}: ${progress.chosen.join(", ")}.`
    : `Ranked: the top-ranked candidate (${progress.candidates.length ? progress.candidates[0].model : "none"}) answers: `
      + (progress.fusion_skipped_reason || "fusion is skipped") + "."];
  lines.push(`Ranking strategy: ${progress.strategy}.`);
  if (progress.degraded && progress.degraded.length) lines.push(`Degraded: ${progress.degraded.join(", ")}.`);
  fill($("fusion-detail"), lines.map((l) => el("div", {}, l)));
  renderTimings(progress.timings || {}, client);
  renderCandidates(progress);
  renderMatrix(progress);
  $("raw").textContent = JSON.stringify(progress, null, 2);
  document.body.dataset.progress = "ranked";
}

function renderProvenance(prov, client) {
  renderFusion(prov);
  renderTimings(prov.timings || {}, client);
  renderCandidates(prov);
  renderMatrix(prov);
  $("raw").textContent = JSON.stringify(prov, null, 2);
}

function renderFusion(prov) {
  const badge = $("fusion-badge");
  badge.textContent = prov.fused ? "fused" : "not fused";
  badge.className = "badge " + (prov.fused ? "ok" : "warn");
  const lines = [];
  if (prov.fused) lines.push(`The fuser wrote the answer from the top ${prov.chosen.length}: ${prov.chosen.join(", ")}.`);
  else lines.push(`The top-ranked candidate (${prov.candidates.length ? prov.candidates[0].model : "none"}) answered: `
                  + (prov.fusion_skipped_reason || "fusion was skipped") + ".");
  lines.push(`Ranking strategy: ${prov.strategy}.`);
  if (prov.degraded && prov.degraded.length) lines.push(`Degraded: ${prov.degraded.join(", ")}.`);
  fill($("fusion-detail"), lines.map((l) => el("div", {}, l)));
}

function renderUsage(usage, finish) {
  if (!usage) return;
  $("fusion-detail").append(el("div", {class: "small"},
    `usage: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens, every model call included`
    + (finish ? `; finish_reason ${finish}` : "")));
}

function renderTimings(t, client) {
  const total = t.total_s || STAGES.reduce((s, [k]) => s + (t[k] || 0), 0) || 1;
  const bar = el("div", {class: "bar"}, STAGES.map(([key, label]) => el("div", {
    class: "seg " + label, style: `flex-grow:${Math.max(t[key] || 0, total * 0.004)}`,
    title: `${label}: ${secs(t[key])}`,
  }, (t[key] || 0) / total > 0.09 ? `${label} ${secs(t[key])}` : "")));
  const rows = STAGES.map(([key, label]) => el("tr", {"data-stage": label},
    el("td", {}, el("span", {class: "dot " + label}), label), el("td", {class: "num"}, secs(t[key]))));
  rows.push(el("tr", {}, el("td", {}, "server total"), el("td", {class: "num"}, secs(t.total_s))));
  if (client.ranked_s !== undefined && client.ranked_s !== null) rows.push(el("tr", {"data-client": "ranked"},
    el("td", {}, "ranked (browser)"), el("td", {class: "num"}, secs(client.ranked_s))));
  if (client.first_piece_s !== undefined && client.first_piece_s !== null) rows.push(el("tr", {}, el("td", {}, "first piece (browser)"),
    el("td", {class: "num"}, secs(client.first_piece_s))));
  if (client.total_s !== undefined) rows.push(el("tr", {}, el("td", {}, "round trip (browser)"),
    el("td", {class: "num"}, secs(client.total_s))));
  fill($("timings"), bar, el("table", {class: "kv"}, rows));
}

function renderCandidates(prov) {
  const cards = prov.candidates.map((c) => el("article", {class: "candidate" + (c.chosen ? " chosen" : ""), "data-model": c.model},
    el("header", {},
      el("span", {class: "rank"}, `#${c.rank}`),
      el("strong", {class: "model"}, c.model),
      c.chosen ? el("span", {class: "badge ok", title: "passed to the fuser"}, "chosen") : null),
    el("div", {class: "meta"},
      el("span", {}, `score ${num(c.score, 3)}`),
      el("span", {class: "latency", title: "the model's whole answer"}, secs(c.latency_s)),
      c.time_to_first_token_s !== undefined && c.time_to_first_token_s !== null
        ? el("span", {class: "ttft", title: "time to the model's first token"}, `ttft ${secs(c.time_to_first_token_s)}`)
        : null,
      el("span", {}, `${c.usage.completion_tokens} tok out / ${c.usage.prompt_tokens} in`),
      c.finish_reason === "length" ? el("span", {class: "error"}, "cut at max_tokens") : null),
    el("div", {class: "text"}, c.text)));
  for (const [model, why] of Object.entries(prov.errors || {})) {
    cards.push(el("article", {class: "candidate failed", "data-model": model},
      el("header", {}, el("span", {class: "rank"}, "✕"), el("strong", {class: "model"}, model),
        el("span", {class: "badge bad"}, model === "ranker" || model === "fuser" ? "failed" : "dropped")),
      el("div", {class: "text error"}, why)));
  }
  for (const model of prov.skipped || []) {
    cards.push(el("article", {class: "candidate failed", "data-model": model},
      el("header", {}, el("span", {class: "rank"}, "…"), el("strong", {class: "model"}, model),
        el("span", {class: "badge warn"}, "not waited for")),
      el("div", {class: "text muted"}, "the quorum had answered and the grace ran out; its call was cancelled")));
  }
  fill($("candidates"), cards);
}

function heat(v, scale) {
  const t = Math.max(-1, Math.min(1, v / scale));
  const hue = t >= 0 ? 152 : 4;
  const light = 97 - 50 * Math.abs(t);
  return `background:hsl(${hue},58%,${light}%);color:${Math.abs(t) > 0.55 ? "#fff" : "#1d2330"}`;
}

function renderMatrix(prov) {
  const M = prov.matrix;
  const cands = prov.candidates;
  if (!M) {
    fill($("matrix"), el("span", {class: "muted"}, cands.length < 2
      ? "one candidate: nothing to compare"
      : `strategy ${prov.strategy} computes no full matrix (only the scores below)`), scoreList(cands));
    return;
  }
  let scale = 1e-9;
  M.forEach((row, i) => row.forEach((v, j) => { if (i !== j) scale = Math.max(scale, Math.abs(v)); }));
  const head = el("tr", {}, el("th", {class: "corner"}, "row \\ column"),
    cands.map((c) => el("th", {class: "col"}, c.model)), el("th", {}, "score"), el("th", {}, "rank"));
  const rows = cands.map((c, i) => el("tr", {"data-model": c.model},
    el("th", {class: "row"}, c.model),
    M[i].map((v, j) => i === j
      ? el("td", {class: "cell diag"}, "–")
      : el("td", {class: "cell", style: heat(v, scale), title: `${c.model} vs ${cands[j].model}: ${v.toFixed(4)}`,
                  "data-value": String(v)}, v.toFixed(2))),
    el("td", {class: "num"}, num(c.score, 3)),
    el("td", {class: "num"}, String(c.rank))));
  fill($("matrix"), el("table", {class: "heat"}, head, rows));
}

function scoreList(cands) {
  return el("table", {class: "kv"}, cands.map((c) => el("tr", {},
    el("td", {}, `#${c.rank} ${c.model}`), el("td", {class: "num"}, num(c.score, 3)))));
}

// -- wiring -------------------------------------------------------------------------------------

$("ask-form").addEventListener("submit", ask);
$("api_key").value = sessionStorage.getItem(KEY_STORE) || "";
$("api_key").addEventListener("change", keyChanged);
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) ask(e);
});
setStatus("idle", "idle");
loadModels();
