// The playground page: its settings (kept in the URL), the socket to this tab's session on the server,
// and drawing what the server's frames carry.  All training happens in gpunn, on the server.
import { classColor, css } from "./colors.js";
import { DigitPad } from "./digits.js";
import { explainHtml } from "./explain.js";
import { NetworkView, fmt } from "./network.js";
import { markPoint, paintCurve, paintPoints, paintSurface } from "./pictures.js";

const $ = (id) => document.getElementById(id);
const FEATURES = ["x1", "x2", "x1^2", "x2^2", "x1x2", "sin x1", "sin x2"];
const FEATURE_LABELS = { "x1": "x\u2081", "x2": "x\u2082", "x1^2": "x\u2081\u00b2", "x2^2": "x\u2082\u00b2",
  "x1x2": "x\u2081x\u2082", "sin x1": "sin x\u2081", "sin x2": "sin x\u2082" };
const DEFAULTS = { dataset: "circle", noise: 0, train_fraction: 0.5, points: 500, features: ["x1", "x2"],
  hidden: [4, 2], activation: "tanh", init: "default", optimizer: "sgd", lr: 0.03, momentum: 0, batch: 10,
  regularization: "none", reg_rate: 0, seed: 0, surface: [0, 1] };
const LISTS = new Set(["features", "hidden", "surface"]);
const NUMBERS = new Set(["noise", "train_fraction", "points", "lr", "momentum", "batch", "reg_rate", "seed"]);
const LRS = [0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
const RATES = [0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
const MOMENTA = [0, 0.5, 0.9, 0.95, 0.99];
const REGRESSION = new Set(["plane", "multigauss"]);
const MAX_UPLOAD = 20 * 1024 * 1024;
const PLAY_ICON = '<svg viewBox="0 0 20 20" width="20" height="20"><path d="M6 3l11 7-11 7z" fill="currentColor"/></svg>';
const PAUSE_ICON = '<svg viewBox="0 0 20 20" width="20" height="20"><path d="M5 3h4v14H5z M11 3h4v14h-4z" fill="currentColor"/></svg>';

const state = {
  settings: readUrl(), showTest: false, playing: false, socket: null, session: null, caps: null, desc: null,
  frame: null, maps: null, pending: null, curve: [], selected: null, sample: { split: "test", index: 0 },
};
const view = new NetworkView($("network"), {
  toggleFeature, addNeuron, removeNeuron, neuron: explainNeuron, editWeight, tooltip,
});
const pad = new DigitPad($("digit-canvas"), $("digit-small"), (pixels) => send({ type: "digit", pixels }));

// -- the URL holds every setting --------------------------------------------------------------
function readUrl() {
  const s = structuredClone(DEFAULTS);
  const params = new URLSearchParams(location.hash.slice(1));
  for (const [key, value] of params) {
    if (key === "showTest") continue;
    if (!(key in DEFAULTS)) continue;
    if (LISTS.has(key)) s[key] = value === "" ? [] : value.split(",").map((v) => (key === "features" ? v : Number(v)));
    else if (NUMBERS.has(key)) s[key] = Number(value);
    else s[key] = value;
  }
  return s;
}

// A link followed or a hash typed: take its settings (our own replaceState fires no hashchange).
window.addEventListener("hashchange", () => {
  state.settings = readUrl();
  state.showTest = new URLSearchParams(location.hash.slice(1)).get("showTest") === "1";
  if (state.caps) setUp(state.caps);
  configure();
});

function writeUrl() {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state.settings)) params.set(key, Array.isArray(value) ? value.join(",") : value);
  if (state.showTest) params.set("showTest", "1");
  history.replaceState(null, "", `#${params.toString()}`);
}

// -- messages ----------------------------------------------------------------------------------
function say(text, note = false) {
  const line = String(text || "").split("\n")[0];
  $("message").textContent = line;
  $("message").className = note ? "note" : "";
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
}

function configure() {
  writeUrl();
  state.curve = [];
  state.configuring = true;
  send({ type: "configure", settings: state.settings });
}

// The server refused the settings: go back to the last ones it took (the defaults, if none yet).
function refused() {
  state.configuring = false;
  const fallback = state.lastGood || (state.triedDefaults ? null : DEFAULTS);
  if (!fallback) return;
  state.triedDefaults = true;
  state.settings = structuredClone(fallback);
  syncControls();
  if (state.caps) setUp(state.caps);
  if (state.lastGood) writeUrl();
  else { state.keepMessage = true; configure(); }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/ws`);
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") { receiveFrame(event.data); return; }
    const message = JSON.parse(event.data);
    if (message.type === "hello") { state.session = document.body.dataset.session = message.session; setUp(message.capabilities); configure(); }
    else if (message.type === "data") receiveData(message);
    else if (message.type === "error") { say(message.message); if (state.configuring) refused(); }
    else if (message.type === "explain") { $("explain").innerHTML = explainHtml(message); $("explain").hidden = false; render(); }
    else if (message.type === "digit") pad.show(message.probabilities, message.classes);
  });
  socket.addEventListener("close", () => {
    if (!$("message").textContent || $("message").className === "note") say("the connection to the playground server closed; reload the page");
    setPlaying(false);
  });
  setInterval(() => send({ type: "ping" }), 20000);
}

// -- the controls --------------------------------------------------------------------------------
function options(select, values, current, label = (v) => String(v)) {
  select.textContent = "";
  const all = values.includes(current) ? values : [...values, current].sort((a, b) => a - b);
  for (const v of all) {
    const option = document.createElement("option");
    option.value = v;
    option.textContent = label(v);
    select.appendChild(option);
  }
  select.value = current;
}

function setUp(caps) {
  state.caps = caps;
  const s = state.settings;
  options($("lr"), LRS, s.lr);
  options($("reg_rate"), RATES, s.reg_rate);
  options($("momentum"), MOMENTA, s.momentum);
  const activation = $("activation");
  activation.textContent = "";
  for (const name of ["relu", "tanh", "sigmoid", "linear"]) {
    const option = new Option(name === "relu" ? "ReLU" : name[0].toUpperCase() + name.slice(1), name);
    if (!caps.activations.includes(name)) { option.disabled = true; option.title = caps.notices.linear; option.textContent += " (not in gpunn)"; }
    activation.appendChild(option);
  }
  activation.value = s.activation;
  const reg = $("regularization");
  reg.textContent = "";
  for (const [value, text] of [["none", "None"], ["L1", "L1"], ["L2", "L2 (weight decay)"]]) {
    const option = new Option(text, value);
    if (value === "L1") { option.disabled = true; option.title = caps.notices.L1; option.textContent += " (not in gpunn)"; }
    reg.appendChild(option);
  }
  reg.value = s.regularization;
  options($("init"), caps.inits, s.init);
  for (const option of $("problem").options) {
    if (option.value === "regression" && !caps.regression) { option.disabled = true; option.title = caps.notices.regression; option.textContent += " (not in this gpunn)"; }
  }
  for (const option of $("dataset").options) {
    if (REGRESSION.has(option.value) && !caps.regression) { option.disabled = true; option.title = caps.notices.regression; }
  }
  syncControls();
}

function syncControls() {
  const s = state.settings;
  $("dataset").value = s.dataset;
  $("problem").value = REGRESSION.has(s.dataset) ? "regression" : "classification";
  $("ratio").value = Math.round(s.train_fraction * 100);
  $("ratio-value").textContent = $("ratio").value;
  $("noise").value = Math.round(s.noise * 100);
  $("noise-value").textContent = $("noise").value;
  $("batch").value = Math.min(30, s.batch);
  $("batch-value").textContent = s.batch;
  $("seed").value = s.seed;
  const generated = !["digits", "csv"].includes(s.dataset);
  $("noise").disabled = !generated;  // your CSV and the digits are what they are
  $("regenerate").disabled = !generated;
  $("ratio").disabled = s.dataset === "digits";  // the digits' split is gpunn's fixed one
  $("optimizer").value = s.optimizer;
  $("momentum").disabled = s.optimizer !== "sgd";
  $("reg_rate").disabled = s.regularization === "none";
  $("show-test").checked = state.showTest;
  $("layer-count").textContent = `${s.hidden.length} hidden layer${s.hidden.length === 1 ? "" : "s"}`;
}

function change(key, value) {
  state.settings[key] = value;
  syncControls();
  configure();
}

$("dataset").addEventListener("change", (e) => change("dataset", e.target.value));
$("problem").addEventListener("change", (e) => change("dataset", e.target.value === "regression" ? "plane" : "circle"));
$("ratio").addEventListener("input", (e) => { $("ratio-value").textContent = e.target.value; });
$("ratio").addEventListener("change", (e) => change("train_fraction", Number(e.target.value) / 100));
$("noise").addEventListener("input", (e) => { $("noise-value").textContent = e.target.value; });
$("noise").addEventListener("change", (e) => change("noise", Number(e.target.value) / 100));
$("batch").addEventListener("input", (e) => { $("batch-value").textContent = e.target.value; });
$("batch").addEventListener("change", (e) => change("batch", Number(e.target.value)));
$("lr").addEventListener("change", (e) => change("lr", Number(e.target.value)));
$("activation").addEventListener("change", (e) => change("activation", e.target.value));
$("regularization").addEventListener("change", (e) => change("regularization", e.target.value));
$("reg_rate").addEventListener("change", (e) => change("reg_rate", Number(e.target.value)));
$("optimizer").addEventListener("change", (e) => {
  state.settings.momentum = 0;
  $("momentum").value = 0;
  change("optimizer", e.target.value);
});
$("momentum").addEventListener("change", (e) => change("momentum", Number(e.target.value)));
$("init").addEventListener("change", (e) => change("init", e.target.value));
$("seed").addEventListener("change", (e) => change("seed", Number(e.target.value)));
$("regenerate").addEventListener("click", () => change("seed", state.settings.seed + 1));
$("show-test").addEventListener("change", (e) => { state.showTest = e.target.checked; writeUrl(); render(); });
$("surface-x").addEventListener("change", (e) => change("surface", [Number(e.target.value), state.settings.surface[1]]));
$("surface-y").addEventListener("change", (e) => change("surface", [state.settings.surface[0], Number(e.target.value)]));
$("add-layer").addEventListener("click", () => change("hidden", [...state.settings.hidden, 2]));
$("remove-layer").addEventListener("click", () => change("hidden", state.settings.hidden.slice(0, -1)));
$("play").addEventListener("click", () => { setPlaying(!state.playing); send({ type: state.playing ? "play" : "pause" }); });
$("step").addEventListener("click", () => { setPlaying(false); send({ type: "step" }); });
$("reset").addEventListener("click", () => { state.curve = []; send({ type: "reset" }); });
$("upload").addEventListener("change", upload);
$("save-model").addEventListener("click", () => download("model.npz", "playground-model.npz"));
$("save-onnx").addEventListener("click", () => download("model.onnx", "playground-model.onnx"));
$("save-data").addEventListener("click", () => download("data.npz", "playground-data.npz"));
$("digit-clear").addEventListener("click", () => pad.clear());
$("surface").addEventListener("click", pickPoint);

function setPlaying(on) {
  state.playing = on;
  $("play").classList.toggle("playing", on);
  $("play").innerHTML = on ? PAUSE_ICON : PLAY_ICON;
}

function toggleFeature(name) {
  const on = new Set(state.settings.features);
  if (on.has(name)) { if (on.size === 1) { say("the network needs at least one input feature"); return; } on.delete(name); }
  else on.add(name);
  change("features", FEATURES.filter((f) => on.has(f)));
}

function addNeuron(layer) {
  const hidden = state.settings.hidden.slice();
  hidden[layer - 1] += 1;
  change("hidden", hidden);
}

function removeNeuron(layer) {
  const hidden = state.settings.hidden.slice();
  if (hidden[layer - 1] <= 1) { say("a layer needs at least one neuron; remove the layer instead"); return; }
  hidden[layer - 1] -= 1;
  change("hidden", hidden);
}

function editWeight(layer, source, target, value, what = "weight") {
  const text = prompt(`New value of this ${what} (now ${fmt(value)}):`, value === null ? "" : String(value));
  if (text === null) return;
  const number = Number(text);
  if (text.trim() === "" || !Number.isFinite(number)) { say(`a ${what} must be a finite number, not ${JSON.stringify(text.slice(0, 30))}`); return; }
  send({ type: "set_weight", layer, source, target, value: number });
}

function tooltip(text, event) {
  const tip = $("tooltip");
  if (!text) { tip.hidden = true; return; }
  tip.textContent = text;
  tip.style.left = `${event.clientX + 12}px`;
  tip.style.top = `${event.clientY + 12}px`;
  tip.hidden = false;
}

function explainNeuron(layer, neuron) {
  state.selected = { layer, neuron };
  view.select(layer, neuron);
  send({ type: "explain", layer, neuron, split: state.sample.split, sample: state.sample.index });
}

function pickPoint(event) {
  const desc = state.desc;
  if (!desc || !desc.extent) return;
  const canvas = $("surface");
  const rect = canvas.getBoundingClientRect();
  const [x0, x1, y0, y1] = desc.extent;
  const x = x0 + (event.clientX - rect.left) / rect.width * (x1 - x0);
  const y = y1 - (event.clientY - rect.top) / rect.height * (y1 - y0);
  const split = state.showTest ? "test" : "train";
  const points = desc[split];
  let best = -1, bestD = Infinity;
  points.xy.forEach(([px, py], i) => { const d = (px - x) ** 2 + (py - y) ** 2; if (d < bestD) { bestD = d; best = i; } });
  if (best < 0) return;
  state.sample = { split, index: best };
  const { layer, neuron } = state.selected || { layer: desc.sizes.length - 1, neuron: 0 };
  explainNeuron(layer, neuron);
  render();
}

async function upload(event) {
  const file = event.target.files[0];
  if (!file) return;
  if (file.size > MAX_UPLOAD) { say(`${file.name}: ${file.size.toLocaleString()} bytes; the playground takes CSV files up to 20 MB`); return; }
  const response = await fetch(`/api/session/${state.session}/upload?name=${encodeURIComponent(file.name)}`,
    { method: "POST", body: await file.arrayBuffer(), headers: { "content-type": "text/csv" } });
  if (!response.ok) { say((await response.json()).error); return; }
  state.settings.surface = [0, 1];
  change("dataset", "csv");
}

async function download(what, name) {
  const response = await fetch(`/api/session/${state.session}/${what}`);
  if (!response.ok) { say((await response.json()).error); return; }
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// -- what the server sends ---------------------------------------------------------------------------
function receiveData(desc) {
  state.desc = desc;
  state.configuring = false;
  state.lastGood = structuredClone(state.settings);
  if (!state.keepMessage) say("");
  state.keepMessage = false;
  state.frame = null;
  state.curve = [];
  const s = state.settings;
  let inputs;
  if (desc.kind === "generated") inputs = FEATURES.map((name) => ({ name: FEATURE_LABELS[name], on: s.features.includes(name), toggle: true, key: name }));
  else inputs = desc.columns.map((name) => ({ name, on: true, toggle: false }));
  view.build(desc.sizes, desc.drawn, inputs, desc.kind);
  const notes = [];
  desc.sizes.forEach((w, layer) => { if (desc.drawn[layer] < w) notes.push(`layer ${layer}: ${desc.drawn[layer]} of ${w} neurons drawn`); });
  if (desc.train && desc.train.xy.length < desc.n_train) notes.push(`${desc.train.xy.length.toLocaleString("en-US")} of ${desc.n_train.toLocaleString("en-US")} training points drawn`);
  if (!desc.extent) notes.push(`${desc.dataset}: ${desc.sizes[0]} inputs, so no 2-D pictures in the nodes` + (desc.kind === "digits" ? "; layer 1 shows each neuron's weights from the 8x8 pixels (blue +, orange \u2212); draw a digit on the right" : ""));
  $("network-note").textContent = notes.join("; ");
  $("digit-box").hidden = desc.kind !== "digits";
  $("surface-box").hidden = !desc.extent;
  legend(desc);
  $("command").textContent = desc.command;
  const pick = $("surface-pick");
  pick.hidden = !(desc.kind === "user" && desc.columns.length > 2);
  if (!pick.hidden) {
    for (const [select, value] of [[$("surface-x"), desc.surface[0]], [$("surface-y"), desc.surface[1]]]) {
      select.textContent = "";
      desc.columns.forEach((name, i) => select.appendChild(new Option(name, i)));
      select.value = value;
    }
  }
  $("explain").hidden = true;
  state.selected = null;
  state.sample = { split: "test", index: 0 };
}

function legend(desc) {
  const box = $("legend");
  box.textContent = "";
  if (desc.problem === "regression") { box.textContent = "orange: -1, blue: +1"; return; }
  desc.classes.forEach((name, k) => {
    const span = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = css(classColor(k));
    span.append(swatch, name);
    span.setAttribute("data-testid", `class-${k}`);
    box.appendChild(span);
  });
}

function receiveFrame(buffer) {
  const length = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  let maps = null;
  if (header.maps) {
    const all = new Float32Array(buffer, 4 + length);
    const n = header.grid * header.grid;
    maps = [];
    let offset = 0;
    for (const count of header.maps) {
      const layer = [];
      for (let i = 0; i < count; i++, offset += n) layer.push(all.subarray(offset, offset + n));
      maps.push(layer);
    }
  }
  if (header.weight_maps) {  // digits: layer 1's incoming weights, 8x8 per neuron
    const all = new Float32Array(buffer, 4 + length);
    const n = header.weight_grid * header.weight_grid;
    maps = [[], []];
    for (let i = 0; i < header.weight_maps; i++) maps[1].push(all.subarray(i * n, (i + 1) * n));
  }
  state.curve.push(header.curve_point);
  if (state.pending === null) requestAnimationFrame(render);
  state.pending = { header, maps };
}

function render() {
  if (state.pending) { state.frame = state.pending.header; state.maps = state.pending.maps; }
  state.pending = null;
  const frame = state.frame, desc = state.desc;
  if (!frame || !desc) return;
  if (view.sizes === null || frame.sizes.join() !== view.sizes.join()) return;  // a frame of the network before
  $("epoch").textContent = frame.epoch.toLocaleString("en-US");
  $("loss-train").textContent = fmt(frame.loss_train);
  $("loss-test").textContent = fmt(frame.loss_test);
  $("loss-train").dataset.value = frame.loss_train;
  $("loss-test").dataset.value = frame.loss_test;
  if ("accuracy" in frame.test && frame.test.accuracy !== null) $("accuracy").textContent = `test accuracy ${(100 * frame.test.accuracy).toFixed(1)}%`;
  else if ("r2" in frame.test && frame.test.r2 !== null) $("accuracy").textContent = `test R\u00b2 ${frame.test.r2.toFixed(3)}`;
  else $("accuracy").textContent = "";
  $("speed").textContent = state.playing && frame.epochs_per_second ? `${Math.round(frame.epochs_per_second)} epochs/s` : "";
  if (frame.message) say(frame.message, true);
  if (!frame.playing && state.playing && frame.message) setPlaying(false);
  paintCurve($("curve"), state.curve);
  $("command").textContent = desc.command.replace(/--epochs \d+|epochs=\d+/, (m) => m.replace(/\d+/, Math.max(1, frame.epoch))) +
    (frame.edited ? "\n(weights you set by hand are not part of it)" : "");
  view.update(frame, state.maps, desc.problem);
  if (state.maps && desc.extent && frame.maps) {
    const canvas = $("surface");
    paintSurface(canvas, state.maps[state.maps.length - 1], frame.grid, desc.problem);
    paintPoints(canvas, desc.train, desc.extent, desc.problem, false);
    if (state.showTest) paintPoints(canvas, desc.test, desc.extent, desc.problem, true);
    const chosen = desc[state.sample.split];
    if (state.selected && chosen && chosen.xy[state.sample.index]) markPoint(canvas, chosen.xy[state.sample.index], desc.extent);
  }
}

state.showTest = new URLSearchParams(location.hash.slice(1)).get("showTest") === "1";
setPlaying(false);
syncControls();
connect();
