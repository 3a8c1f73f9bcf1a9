// The playground's logic: an ES module, no framework, no build step. It calls the public API only, as any client:
// GET /v1/models, POST /v1/captions, /v1/vqa and /v1/rank as multipart forms (the image files as they are), and the
// collection routes (GET /v1/collections, POST /v1/collections/{name}/search as JSON, and each result's stored image
// where the collection keeps images). Where
// the server wants an API key (a 401), it asks for one, keeps it in sessionStorage and sends it as a Bearer token.

const KEY_STORE = "dlip-playground-api-key";
const TIMING_HEADERS = [
  ["x-queue-time", "queue"],
  ["x-preprocess-time", "preprocess"],
  ["x-inference-time", "inference"],
];
const DEFAULT_CANDIDATES = ["a red circle", "a blue square", "two green triangles"];

const $ = (id) => document.getElementById(id);
const state = { image: null, images: [], previews: [] }; // the query image (a File); the images to search

/** An API failure: the reply's own message (error.message in our and OpenAI's dialects, error in KServe's). */
class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---- API calls ----

function authHeaders(headers = {}) {
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.authorization = `Bearer ${key}`;
  return headers;
}

/** Calls the API with the stored key; returns the parsed reply and timings, or throws ApiFailure. A FormData body
 * goes as multipart, any other object as JSON. */
async function api(path, body) {
  const headers = authHeaders({ accept: "application/json" });
  const asJson = body && !(body instanceof FormData);
  if (asJson) headers["content-type"] = "application/json";
  const t0 = performance.now();
  let res;
  try {
    res = await fetch(path, { method: body ? "POST" : "GET", headers, body: asJson ? JSON.stringify(body) : body });
  } catch (err) {
    throw new ApiFailure(0, `the server did not answer (${err.message})`);
  }
  const text = await res.text();
  const ms = performance.now() - t0;
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: the status says it
  }
  if (!res.ok) {
    const e = json && json.error;
    const message = (e && typeof e.message === "string" && e.message) || (typeof e === "string" && e) || "";
    if (res.status === 401) askForKey(message || "this server needs an API key");
    throw new ApiFailure(res.status, `${res.status} ${message || res.statusText || "request failed"}`);
  }
  const server = TIMING_HEADERS.filter(([h]) => res.headers.has(h)).map(([h, name]) => {
    const v = res.headers.get(h);
    return `${name} ${/^\d+(\.\d+)?$/.test(v) ? `${v} ms` : v}`;
  });
  return { json, ms, server };
}

/** "412 ms in the page; server: queue 3 ms, inference 400 ms" */
function timing({ ms, server }) {
  const page = `${Math.round(ms)} ms in the page`;
  return server.length ? `${page}; server: ${server.join(", ")}` : page;
}

// ---- messages and the key ----

function say(text, kind = "error") {
  const p = document.createElement("p");
  p.className = kind;
  p.textContent = text;
  $("messages").replaceChildren(p);
}

function clearMessages() {
  $("messages").replaceChildren();
}

function askForKey(message) {
  const form = $("key-form");
  const first = form.hidden;
  form.hidden = false;
  if (first) $("api-key").focus();
  say(`401 ${message}: enter the API key`);
}

$("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  $("api-key").value = "";
  if (await loadModels()) {
    loadCollections();
    $("key-form").hidden = true;
    say("key accepted", "ok");
  }
});

// ---- models ----

/** The models of GET /v1/models in either shape: {default, models:[{name,...}]} or OpenAI's {object:"list", data}. */
export function modelsOf(reply) {
  const list = Array.isArray(reply.data) ? reply.data : Array.isArray(reply.models) ? reply.models : [];
  const models = list.map((m) => ({ name: m.name ?? m.id, version: m.version, tasks: m.tasks ?? [] }));
  return { models, default: reply.default ?? models[0]?.name };
}

async function loadModels() {
  try {
    const { json } = await api("/v1/models");
    const { models, default: def } = modelsOf(json);
    const select = $("model");
    select.replaceChildren(
      ...models.map((m) => {
        const o = document.createElement("option");
        o.value = m.name;
        o.textContent = m.name === def ? `${m.name} (default)` : m.name;
        o.dataset.info = [m.version && `version ${m.version}`, m.tasks.join(", ")].filter(Boolean).join("; ");
        o.dataset.tasks = m.tasks.join(" ");
        return o;
      }),
    );
    select.value = def;
    select.disabled = models.length === 0;
    showModelInfo();
    if (models.length === 0) say("the server serves no model");
    return true;
  } catch (err) {
    say(err.message);
    return false;
  }
}

function showModelInfo() {
  const o = $("model").selectedOptions[0];
  $("model-info").textContent = o?.dataset.info ?? "";
  applyTasks();
}

/**
 * Each task's card (`data-task`: the bundle task its route needs) is usable only where the selected model serves
 * that task: otherwise its controls are disabled and a note says so (the server would answer 400 unsupported_task).
 */
function applyTasks() {
  const o = $("model").selectedOptions[0];
  if (o?.dataset.tasks === undefined) return; // models not loaded yet: leave the page as it is
  const tasks = o.dataset.tasks.split(" ").filter(Boolean);
  for (const card of document.querySelectorAll("section[data-task]")) {
    const served = tasks.includes(card.dataset.task);
    card.classList.toggle("unserved", !served);
    for (const c of card.querySelectorAll("button, input, select, textarea")) c.disabled = !served;
    let note = card.querySelector(".unserved-note");
    if (!note) {
      note = document.createElement("p");
      note.className = "unserved-note muted";
      card.querySelector("h2").after(note);
    }
    note.hidden = served;
    note.textContent = served
      ? ""
      : `${o.value} does not serve ${card.dataset.task} (it serves ${tasks.join(", ") || "no task"})`;
  }
}
$("model").addEventListener("change", showModelInfo);

function withModel(form) {
  const model = $("model").value;
  if (model && !$("model").disabled) form.append("model", model);
  return form;
}

// ---- images ----

function setImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && file.type !== "") {
    say(`${file.name} is not an image (${file.type})`);
    return;
  }
  state.image = file;
  const img = $("preview");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  img.alt = `preview of ${file.name || "the pasted image"}`;
  img.hidden = false;
  $("image-name").textContent = `${file.name || "pasted image"}, ${Math.round(file.size / 1024)} KiB`;
  clearMessages();
}

function setImages(files) {
  const list = [...files].filter((f) => f.type.startsWith("image/") || f.type === "");
  if (!list.length) return;
  for (const url of state.previews) URL.revokeObjectURL(url);
  state.images = list;
  state.previews = list.map((f) => URL.createObjectURL(f));
  $("thumbs").replaceChildren(
    ...list.map((f, i) => {
      const img = document.createElement("img");
      img.src = state.previews[i];
      img.alt = f.name;
      img.title = f.name;
      return img;
    }),
  );
  $("image-ranking").replaceChildren();
}

/** A drop zone: a label around a file input (reachable and operable by keyboard), which also takes dropped files. */
function dropZone(zone, input, take) {
  input.addEventListener("change", () => take(input.files));
  zone.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    if (ev.dataTransfer?.files.length) take(ev.dataTransfer.files);
  });
}
dropZone($("drop"), $("image-file"), (files) => setImage(files[0]));
dropZone($("drop-many"), $("image-files"), setImages);
document.addEventListener("paste", (ev) => {
  const file = [...(ev.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
  if (file) setImage(file);
});

function needImage() {
  if (state.image) return true;
  say("choose an image first (drop, paste or pick one)");
  $("image-file").focus();
  return false;
}

// ---- tasks ----

/** Runs one task with its button disabled meanwhile; an ApiFailure shows the API's message. */
async function run(button, timingEl, task) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  timingEl.textContent = "working...";
  try {
    const r = await task();
    timingEl.textContent = timing(r);
    clearMessages();
  } catch (err) {
    timingEl.textContent = "";
    say(err.message);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    applyTasks(); // the model may have changed meanwhile
  }
}

$("caption-btn").addEventListener("click", () => {
  if (!needImage()) return;
  run($("caption-btn"), $("caption-time"), async () => {
    const form = withModel(new FormData());
    form.append("image", state.image);
    form.append("num_beams", $("num-beams").value || "1");
    const r = await api("/v1/captions", form);
    const [c] = r.json.captions;
    $("caption").textContent = c.text || "(empty caption)";
    return r;
  });
});

$("vqa-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!needImage()) return;
  run($("vqa-btn"), $("vqa-time"), async () => {
    const form = withModel(new FormData());
    form.append("image", state.image);
    form.append("question", $("question").value);
    const r = await api("/v1/vqa", form);
    $("answer").textContent = `${r.json.answer || "(empty answer)"}  (p = ${r.json.score.toFixed(3)})`;
    return r;
  });
});

$("rank-btn").addEventListener("click", () => {
  if (!needImage()) return;
  const texts = $("candidates")
    .value.split("\n")
    .map((t) => t.trim())
    .filter(Boolean);
  if (!texts.length) return say("write at least one candidate text");
  run($("rank-btn"), $("rank-time"), async () => {
    const form = withModel(new FormData());
    form.append("query_image", state.image);
    for (const t of texts) form.append("text", t);
    form.append("rerank", $("rerank").value);
    form.append("top_k", String(texts.length));
    const r = await api("/v1/rank", form);
    $("ranking").replaceChildren(...rows(r.json.results, (i) => textLabel(texts[i]), "text"));
    return r;
  });
});

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!state.images.length) {
    say("choose or drop the images to search first");
    $("image-files").focus();
    return;
  }
  run($("search-btn"), $("search-time"), async () => {
    const form = withModel(new FormData());
    form.append("query", $("query").value);
    for (const f of state.images) form.append("image", f);
    form.append("top_k", String(state.images.length));
    form.append("rerank", $("rerank").value);
    const r = await api("/v1/rank", form);
    $("image-ranking").replaceChildren(...rows(r.json.results, imageLabel, "image"));
    return r;
  });
});

// ---- ranking rows: one per candidate, ITC and ITM as separate bars ----

function textLabel(text) {
  const span = document.createElement("span");
  span.className = "label";
  span.textContent = text;
  return span;
}

function imageLabel(i) {
  const img = document.createElement("img");
  img.src = state.previews[i];
  img.alt = state.images[i].name;
  img.className = "label";
  return img;
}

/**
 * Bar widths: the ITC cosine over [-1, 1]; the ITM match logit (a logit, not a probability) relative to this
 * ranking's highest, over a span of at least ITM_SPAN logits so that near-equal logits get near-equal bars.
 */
const ITM_SPAN = 2;
function rows(results, label, kind) {
  const itm = results.map((r) => r.itm_score).filter((v) => v !== null);
  const hi = Math.max(...itm);
  const span = Math.max(ITM_SPAN, hi - Math.min(...itm));
  return results.map((r) => {
    const li = document.createElement("li");
    li.className = `rank-row ${kind}`;
    const bars = document.createElement("div");
    bars.className = "bars";
    bars.append(bar("ITC", r.itc_score, (r.itc_score + 1) / 2));
    if (r.itm_score !== null) bars.append(bar("ITM", r.itm_score, 1 - (hi - r.itm_score) / span));
    li.append(label(r.index), bars);
    return li;
  });
}

function bar(name, value, fraction) {
  const wrap = document.createElement("div");
  wrap.className = `bar ${name.toLowerCase()}`;
  const title = document.createElement("span");
  title.className = "bar-name";
  title.textContent = name;
  const track = document.createElement("span");
  track.className = "track";
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  track.append(fill);
  const num = document.createElement("span");
  num.className = "value";
  num.textContent = value.toFixed(3);
  wrap.append(title, track, num);
  return wrap;
}

// ---- collections: pick one, search it by text, see its images (or ids) with their scores ----

const collections = new Map(); // name -> GET /v1/collections entry
const resultUrls = []; // blob: URLs of the shown results' images

/** The collection list in either shape: {collections: [...]} or a bare array. */
export function collectionsOf(reply) {
  return Array.isArray(reply) ? reply : Array.isArray(reply?.collections) ? reply.collections : [];
}

async function loadCollections() {
  const select = $("collection");
  try {
    const { json } = await api("/v1/collections");
    const list = collectionsOf(json);
    collections.clear();
    for (const c of list) collections.set(c.name, c);
    select.replaceChildren(
      ...list.map((c) => {
        const o = document.createElement("option");
        o.value = c.name;
        o.textContent = `${c.name} (${c.items} items)`;
        return o;
      }),
    );
    select.disabled = list.length === 0;
    if (!list.length) {
      const o = document.createElement("option");
      o.textContent = "no collections";
      select.replaceChildren(o);
    }
    showCollectionInfo();
  } catch (err) {
    const o = document.createElement("option");
    o.textContent = "unavailable";
    select.replaceChildren(o);
    select.disabled = true;
    $("coll-info").textContent = `collections: ${err.message}`;
  }
}

function showCollectionInfo() {
  const c = collections.get($("collection").value);
  $("coll-info").textContent = c
    ? [`model ${c.model}`, c.store_images ? "images kept" : "images not kept: results show ids"].join("; ")
    : "";
}
$("collection").addEventListener("change", showCollectionInfo);

/** A stored image as a blob: URL (the page's CSP allows blob: images), or null where the server has none. */
async function storedImage(collection, id) {
  const url = `/v1/collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(id)}/image`;
  try {
    const res = await fetch(url, { headers: authHeaders() });
    if (!res.ok) return null;
    return URL.createObjectURL(await res.blob());
  } catch {
    return null;
  }
}

function resultLabel(hit, src) {
  const fig = document.createElement("figure");
  fig.className = "label hit";
  if (src) {
    const img = document.createElement("img");
    img.src = src;
    img.alt = hit.id;
    fig.append(img);
  }
  const cap = document.createElement("figcaption");
  const id = document.createElement("span");
  id.className = "hit-id";
  id.textContent = hit.id;
  const score = document.createElement("span");
  score.className = "hit-score";
  score.textContent = `score ${hit.score.toFixed(3)}`;
  cap.append(id, score);
  fig.append(cap);
  return fig;
}

$("coll-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("collection").value;
  const c = collections.get(name);
  if (!c) return say("create a collection first (POST /v1/collections), then reload the page");
  const query = $("coll-query").value.trim();
  if (!query) return say("write a text to search for");
  run($("coll-btn"), $("coll-time"), async () => {
    const body = { text: query, limit: Number($("coll-limit").value) || 8 };
    if ($("coll-rerank").value === "itm") body.rerank = "itm";
    const r = await api(`/v1/collections/${encodeURIComponent(name)}/search`, body);
    const hits = r.json.results;
    for (const u of resultUrls.splice(0)) URL.revokeObjectURL(u);
    const srcs = c.store_images ? await Promise.all(hits.map((h) => storedImage(name, h.id))) : hits.map(() => null);
    for (const u of srcs) if (u) resultUrls.push(u);
    const asRank = hits.map((h, i) => ({ index: i, itc_score: h.itc, itm_score: h.itm }));
    $("coll-results").replaceChildren(
      ...rows(asRank, (i) => resultLabel(hits[i], srcs[i]), c.store_images ? "image" : "text"),
    );
    if (!hits.length) $("coll-results").replaceChildren(textLabel("no results"));
    return r;
  });
});

$("candidates").value = DEFAULT_CANDIDATES.join("\n");
loadModels().then((ok) => ok && loadCollections());
