"use strict";
const AUTH = document.body.dataset.auth === "1";  // the server writes 1 when it requires an API key
const $ = (id) => document.getElementById(id);
const PALETTE = ["#3a7bd5", "#d5833a", "#3aa57a", "#b9473f", "#7a5bc7", "#8c6d31", "#d05ca8",
                 "#5f6b76", "#a1a130", "#2aa1b5", "#5d8f2c", "#c4553a", "#45609e", "#9a4f7d"];
let labels = [];
// Settings the user has changed: the model's defaults (read from /v1/model) never overwrite them, even
// when the description is first read at the first Classify (with an API key, after the key is typed).
const touched = new Set();
const SETTINGS = ["strategy", "head_tokens", "stride", "max_windows", "pool"];

function headers() {
  const h = { "Content-Type": "application/json" };
  if (AUTH) h["Authorization"] = "Bearer " + $("key").value.trim();
  return h;
}

async function call(path, body) {
  const response = await fetch(path, body === undefined ? { headers: headers() }
                                                         : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  let payload = null;
  try { payload = await response.json(); } catch (e) { payload = null; }
  if (!response.ok) {
    const why = payload && payload.error ? payload.error : response.statusText;
    throw new Error(`${response.status}: ${why}`);
  }
  return payload;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function showStrategy() {
  const chosen = $("strategy").value;
  document.querySelectorAll("[data-for]").forEach((el) => { el.hidden = el.dataset.for !== chosen; });
}

async function describe() {
  try {
    const model = await call("/v1/model");
    labels = model.labels;
    $("model").textContent = `${model.labels.length} labels, ${model.precision} on ${model.provider} (${model.engine}), `
      + `${model.max_length} positions; version ${model.version}`;
    const lt = model.long_text;
    for (const id of SETTINGS) if (!touched.has(id)) $(id).value = lt[id];
    showStrategy();
    $("error").hidden = true;
  } catch (e) {
    $("model").textContent = AUTH ? "enter the API key, then classify" : "could not describe the model";
    if (!AUTH) showError(e.message);
  }
}

function number(id) {
  const raw = $(id).value.trim();
  return raw === "" ? raw : Number(raw);  // the server says what is wrong with what is not a whole number
}

function longText() {
  const strategy = $("strategy").value;
  const out = { strategy };
  if (strategy === "head_tail") out.head_tokens = number("head_tokens");
  if (strategy === "windows") Object.assign(out, { stride: number("stride"), max_windows: number("max_windows"), pool: $("pool").value });
  return out;
}

function colour(label) {
  const at = labels.indexOf(label);
  return PALETTE[(at < 0 ? 0 : at) % PALETTE.length];
}

function render(text, p) {
  // The server counts characters as Python does, by code point; a JavaScript string's length and
  // slice() count UTF-16 units, two for an emoji or any other character beyond the BMP.
  const chars = Array.from(text);
  $("summary").textContent = `${p.label} (${(100 * p.score).toFixed(1)}%): ${p.tokens} tokens`
    + `${p.windows > 1 ? ` in ${p.windows} windows` : ""}${p.truncated ? ", truncated" : ""}`;
  const bars = $("bars");
  bars.replaceChildren();
  const ordered = Object.entries(p.probs).sort((a, b) => b[1] - a[1]);
  for (const [label, score] of ordered) {
    const row = document.createElement("div");
    row.className = "bar" + (label === p.label ? " top" : "");
    row.dataset.label = label;
    row.dataset.score = String(score);
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
    track.append(fill);
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = `${(100 * score).toFixed(1)}%`;
    row.append(name, track, num);
    bars.append(row);
  }
  const windows = p.window_labels || [];
  $("windows").hidden = windows.length === 0;
  const strip = $("strip"), list = $("window-list");
  strip.replaceChildren();
  list.replaceChildren();
  const lanes = 2;  // windows overlap: alternate lanes so each stays visible
  strip.style.height = `${lanes * 1.4}rem`;
  windows.forEach((w, i) => {
    const box = document.createElement("div");
    box.className = "window";
    box.style.left = `${(100 * w.start) / Math.max(chars.length, 1)}%`;
    box.style.width = `${(100 * (w.end - w.start)) / Math.max(chars.length, 1)}%`;
    box.style.top = `${(i % lanes) * 1.4}rem`;
    box.style.background = colour(w.label);
    box.textContent = w.label;
    box.title = `window ${i + 1}: characters ${w.start}-${w.end}, ${w.label} ${(100 * w.score).toFixed(1)}%`;
    strip.append(box);
    const item = document.createElement("li");
    item.textContent = `characters ${w.start}-${w.end}: ${w.label} (${(100 * w.score).toFixed(1)}%) `
      + `"${chars.slice(w.start, Math.min(w.end, w.start + 24)).join("")}..."`;
    list.append(item);
  });
  $("result").hidden = false;
}

$("strategy").addEventListener("change", showStrategy);
for (const id of SETTINGS) {
  for (const kind of ["input", "change"]) $(id).addEventListener(kind, () => touched.add(id));
}
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").hidden = true;
  const text = $("text").value;
  $("classify").disabled = true;
  try {
    if (labels.length === 0) await describe();
    const answer = await call("/v1/classify", { texts: [text], long_text: longText() });
    render(text, answer.predictions[0]);
  } catch (e) {
    $("result").hidden = true;
    showError(e.message);
  } finally {
    $("classify").disabled = false;
  }
});
if (AUTH) $("key-row").hidden = false;
showStrategy();
describe();
