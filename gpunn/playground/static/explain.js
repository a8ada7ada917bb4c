// The arithmetic panel: one neuron's part of one SGD step, with the numbers gpunn explain computes.
import { fmt } from "./network.js";

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const term = (v) => (v < 0 ? `(${fmt(v)})` : fmt(v));  // a factor in a product: negatives in parentheses
const num = (id, v) => `<span data-testid="explain-${id}" data-value="${v}">${fmt(v)}</span>`;

export function explainHtml(r) {
  const L = r.layer, i = r.neuron;
  const head = `<button class="close" onclick="this.parentElement.hidden = true">&times;</button>
    <b>Neuron ${i} of layer ${L}</b> on ${r.split} sample ${r.sample}` +
    (r.point ? ` at (${r.point.map((v) => v.toFixed(2)).join(", ")})` : "") +
    `, target t = [${r.t.map(fmt).join(", ")}]` + (r.target_note ? ` (${esc(r.target_note)})` : "") +
    `; learning rate \u03b7 = ${r.lr}`;
  if (L === 0) return `${head}<p>An input: its value is x${i + 1} = ${num("y", r.x[i])}.</p>`;
  const layer = r.layers[L - 1];
  const inputs = L === 1 ? r.x : r.layers[L - 2].y;
  const w = layer.W.map((row) => row[i]);
  const b = layer.b[i];
  const terms = inputs.map((x, k) => `${term(x)}\u00b7${term(w[k])}`).join(" + ");
  const last = L === r.layers.length;
  const f = last ? (r.output_activation === "softmax" ? "softmax" : r.output_activation) : r.activation;
  const delta = r.deltas[L - 1][i];
  const gradW = r.grad_W[L - 1].map((row) => row[i]);
  const nextW = r.W_next[L - 1].map((row) => row[i]);
  const yname = L === 1 ? "x" : "y";
  const updates = w.map((wk, k) => `w${k + 1}: ${fmt(wk)} \u2212 ${r.lr}\u00b7${term(inputs[k])}\u00b7${term(delta)} = ` +
    `<span data-testid="explain-w-next-${k}" data-value="${nextW[k]}">${fmt(nextW[k])}</span>` +
    `   (\u2202E/\u2202w = ${yname}${k + 1}\u00b7\u03b4 = ${fmt(gradW[k])})`).join("\n");
  const fText = f === "softmax" ? "softmax(v)\u1d62 = e^v\u1d62 / \u03a3\u2c7c e^v\u2c7c" : `${f}(v)`;
  return `${head}
<div class="formula">v = \u03a3 ${yname}\u1d62 w\u1d62 + b = ${terms} + ${term(b)} = ${num("v", layer.v[i])}
y = ${fText} = ${num("y", layer.y[i])}
\u03b4 = \u2202E/\u2202v = ${num("delta", delta)}   (${last ? "the error's derivative, output layer" : "the chain rule: (\u03a3 w\u00b7\u03b4 of the layer above)\u00b7f\u2032(v)"})
one step, w \u2190 w \u2212 \u03b7\u00b7${yname}\u00b7\u03b4:
${updates}
b: ${fmt(b)} \u2212 ${r.lr}\u00b7${term(delta)} = ${num("b-next", r.b_next[L - 1][i])}
error E = ${num("error", r.error)}, after the step ${num("error-after", r.error_after)}; every gradient agrees with finite differences to ${r.fd_max_rel_err.toExponential(1)}</div>` +
    (r.optimizer_note ? `<p><i>${esc(r.optimizer_note)}</i></p>` : "") +
    (r.command ? `<p>The same numbers, in full: <code>${esc(r.command)}</code> (after saving the model and the data)</p>` : "");
}
