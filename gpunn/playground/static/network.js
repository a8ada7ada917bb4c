// The network drawing: a column of nodes per layer, each node a canvas with its neuron's picture,
// and each weight an edge whose colour is its sign and whose width its size.
import { css, diverging } from "./colors.js";
import { normalise, paintClassMap, paintMap } from "./pictures.js";

const NODE = 40, ROW = 50, TOP = 54, LEFT = 90, COLUMN = 130;
const SVG = "http://www.w3.org/2000/svg";

export class NetworkView {
  // handlers: {toggleFeature(name), addNeuron(layer), removeNeuron(layer), neuron(layer, index),
  //            editWeight(layer, source, target, value), tooltip(text, event)}
  constructor(root, handlers) {
    this.root = root;
    this.handlers = handlers;
    this.nodes = [];  // per layer: canvases of the drawn neurons
    this.edges = [];  // per layer (1..): [source][target] path elements
    this.sizes = null;
  }

  // sizes/drawn per layer; inputs: [{name, on}] the input column (all features, or the data's columns)
  build(sizes, drawn, inputs, kind) {
    this.sizes = sizes.slice();
    this.drawn = drawn.slice();
    this.kind = kind;
    this.root.textContent = "";
    const inputRows = inputs.filter((input) => !input.on).length + drawn[0];  // off features, drawn inputs
    const rows = Math.max(inputRows, ...drawn.slice(1)) + 1;  // and a row for "+N more"
    const width = LEFT + COLUMN * (sizes.length - 1) + NODE + 10;
    const height = TOP + rows * ROW + 20;
    this.root.style.width = `${width}px`;
    this.root.style.height = `${height}px`;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    this.root.appendChild(svg);
    this.svg = svg;
    const position = (layer, row) => [LEFT + COLUMN * layer, TOP + row * ROW];

    // input column: every feature (off ones dimmed, click toggles), network inputs numbered among the on ones
    this.nodes = [];
    const inputNodes = [];
    const inputRow = [];
    let index = 0;
    inputs.forEach((input, row) => {
      if (input.on && index >= drawn[0]) return;
      const node = this.node(...position(0, row), input.name);
      node.classList.add("input");
      if (input.on) {
        node.setAttribute("data-testid", `neuron-0-${index}`);
        inputNodes.push(node.querySelector("canvas"));
        inputRow.push(row);
        index += 1;
      } else {
        node.classList.add("off");
        node.setAttribute("data-testid", `feature-${input.key || input.name}`);
      }
      if (input.toggle) node.addEventListener("click", () => this.handlers.toggleFeature(input.key));
    });
    this.nodes.push(inputNodes);
    const rowOf = [inputRow];
    for (let layer = 1; layer < sizes.length; layer++) {
      const canvases = [], rowsHere = [];
      const last = layer === sizes.length - 1;
      for (let i = 0; i < drawn[layer]; i++) {
        const node = this.node(...position(layer, i), last ? "" : "");
        node.setAttribute("data-testid", `neuron-${layer}-${i}`);
        node.addEventListener("click", () => this.handlers.neuron(layer, i));
        const bias = document.createElement("div");  // the bias, as TensorFlow Playground draws it
        bias.className = "bias";
        bias.setAttribute("data-testid", `bias-${layer}-${i}`);
        bias.addEventListener("click", (e) => {
          e.stopPropagation();
          this.handlers.editWeight(layer, sizes[layer - 1], i, this.bias(layer, i), "bias");
        });
        node.appendChild(bias);
        node.addEventListener("mousemove", (e) => this.handlers.tooltip(this.nodeText(layer, i), e));
        node.addEventListener("mouseleave", () => this.handlers.tooltip(null));
        canvases.push(node.querySelector("canvas"));
        rowsHere.push(i);
      }
      this.nodes.push(canvases);
      rowOf.push(rowsHere);
      if (drawn[layer] < sizes[layer]) this.note(...position(layer, drawn[layer]), `+${sizes[layer] - drawn[layer]} more`);
      if (!last) this.layerHead(layer, LEFT + COLUMN * layer - 15, 4, sizes[layer]);
    }
    // edges
    this.edges = [null];
    for (let layer = 1; layer < sizes.length; layer++) {
      const grid = [];
      rowOf[layer - 1].forEach((sourceRow, s) => {
        const row = [];
        rowOf[layer].forEach((targetRow, t) => {
          const [x0, y0] = position(layer - 1, sourceRow), [x1, y1] = position(layer, targetRow);
          const path = document.createElementNS(SVG, "path");
          const ax = x0 + NODE, ay = y0 + NODE / 2, bx = x1, by = y1 + NODE / 2, mx = (ax + bx) / 2;
          path.setAttribute("d", `M${ax},${ay} C${mx},${ay} ${mx},${by} ${bx},${by}`);
          path.setAttribute("fill", "none");
          path.setAttribute("class", "edge");
          path.setAttribute("data-testid", `weight-${layer}-${s}-${t}`);
          path.addEventListener("mousemove", (e) => this.handlers.tooltip(`w = ${fmt(this.weight(layer, s, t))} (click to edit)`, e));
          path.addEventListener("mouseleave", () => this.handlers.tooltip(null));
          path.addEventListener("click", () => this.handlers.editWeight(layer, s, t, this.weight(layer, s, t)));
          svg.appendChild(path);
          row.push(path);
        });
        grid.push(row);
      });
      this.edges.push(grid);
    }
  }

  node(x, y, name) {
    const div = document.createElement("div");
    div.className = "node";
    div.style.left = `${x}px`;
    div.style.top = `${y}px`;
    const canvas = document.createElement("canvas");
    canvas.width = 1; canvas.height = 1;
    div.appendChild(canvas);
    if (name) {
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = name;
      div.appendChild(label);
    }
    this.root.appendChild(div);
    return div;
  }

  note(x, y, text) {
    const div = document.createElement("div");
    div.className = "layer-head";
    div.style.left = `${x - 15}px`;
    div.style.top = `${y}px`;
    div.textContent = text;
    this.root.appendChild(div);
  }

  layerHead(layer, x, y, width) {
    const div = document.createElement("div");
    div.className = "layer-head";
    div.style.left = `${x}px`;
    div.style.top = `${y}px`;
    const plus = document.createElement("button");
    plus.textContent = "+";
    plus.title = "Add a neuron";
    plus.setAttribute("data-testid", `add-neuron-${layer}`);
    plus.addEventListener("click", () => this.handlers.addNeuron(layer));
    const minus = document.createElement("button");
    minus.textContent = "\u2212";
    minus.title = "Remove a neuron";
    minus.setAttribute("data-testid", `remove-neuron-${layer}`);
    minus.addEventListener("click", () => this.handlers.removeNeuron(layer));
    div.append(plus, " ", minus, document.createElement("br"), `${width} neuron${width === 1 ? "" : "s"}`);
    this.root.appendChild(div);
  }

  weight(layer, s, t) {
    const w = this.frame && this.frame.weights[layer - 1];
    return w && w[s] ? w[s][t] : null;
  }

  bias(layer, i) {
    const b = this.frame && this.frame.biases[layer - 1];
    return b ? b[i] : null;
  }

  nodeText(layer, i) {
    return `layer ${layer}, neuron ${i}: bias b = ${fmt(this.bias(layer, i))} (click for its arithmetic; ` +
      "click the small square to set the bias)";
  }

  // A frame: weights on the edges, pictures in the nodes.
  update(frame, maps, problem) {
    this.frame = frame;
    for (let layer = 1; layer < this.edges.length; layer++) {
      const grid = this.edges[layer];
      const weights = frame.weights[layer - 1] || [];
      grid.forEach((row, s) => row.forEach((path, t) => {
        const w = weights[s] ? weights[s][t] : null;
        const ok = Number.isFinite(w);
        path.setAttribute("stroke", ok ? css(diverging(Math.sign(w) * Math.min(1, 0.25 + Math.abs(w)))) : "#000");
        path.setAttribute("stroke-width", ok ? Math.min(8, 0.5 + 2 * Math.abs(w)) : 1);
      }));
    }
    for (const el of this.root.querySelectorAll(".bias")) {
      const [, layer, i] = el.getAttribute("data-testid").split("-").map(Number);
      const b = this.bias(layer, i);
      el.style.background = Number.isFinite(b) ? css(diverging(Math.sign(b) * Math.min(1, 0.25 + Math.abs(b)))) : "#000";
    }
    if (!maps) return;
    const last = this.nodes.length - 1;
    if (frame.weight_maps) {  // digits: each neuron of layer 1 shows its weights from the 8x8 pixels
      this.nodes[1].forEach((canvas, i) => paintMap(canvas, normalise(maps[1][i], "input"), frame.weight_grid));
      return;
    }
    this.nodes.forEach((canvases, layer) => {
      const kind = layer === 0 ? "input" : layer === last ? frame.output : frame.activation;
      canvases.forEach((canvas, i) => {
        const values = maps[layer] && maps[layer][i];
        if (!values) return;
        if (layer === last && kind === "softmax") paintClassMap(canvas, values, frame.grid, i);
        else paintMap(canvas, normalise(values, kind), frame.grid);
      });
    });
  }

  select(layer, index) {
    for (const el of this.root.querySelectorAll(".node.selected")) el.classList.remove("selected");
    const el = this.root.querySelector(`[data-testid="neuron-${layer}-${index}"]`);
    if (el) el.classList.add("selected");
  }
}

export function fmt(v) {
  if (v === null || v === undefined) return "\u2013";
  if (!Number.isFinite(v)) return String(v);
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(4);
}
