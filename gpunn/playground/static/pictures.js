// Heatmaps, the output surface with its data points, and the loss curve.
import { classColor, css, diverging, faded } from "./colors.js";

// How a layer's values map to [-1, 1] for the diverging colours.
export function normalise(values, kind) {
  const out = new Float32Array(values.length);
  if (kind === "input") {  // features have their own ranges: scale each map by its largest magnitude
    let m = 0;
    for (const v of values) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
    for (let i = 0; i < values.length; i++) out[i] = m > 0 ? values[i] / m : 0;
  } else if (kind === "sigmoid" || kind === "softmax") {
    for (let i = 0; i < values.length; i++) out[i] = 2 * values[i] - 1;
  } else {
    out.set(values);  // tanh, relu, identity: as they are, clamped by the colour map
  }
  return out;
}

// Paint a grid x grid map of values in [-1, 1] into a canvas.
export function paintMap(canvas, values, grid) {
  if (canvas.width !== grid) { canvas.width = grid; canvas.height = grid; }
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(grid, grid);
  for (let i = 0; i < grid * grid; i++) {
    const c = diverging(values[i]);
    image.data[4 * i] = c[0]; image.data[4 * i + 1] = c[1]; image.data[4 * i + 2] = c[2]; image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// One output unit's probability map in its class's colour.
export function paintClassMap(canvas, probs, grid, k) {
  if (canvas.width !== grid) { canvas.width = grid; canvas.height = grid; }
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(grid, grid);
  const color = classColor(k);
  for (let i = 0; i < grid * grid; i++) {
    const c = faded(color, probs[i]);
    image.data[4 * i] = c[0]; image.data[4 * i + 1] = c[1]; image.data[4 * i + 2] = c[2]; image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// The surface is drawn lighter than the points on it, so that both show.
const LIGHT = 0.6;

// The decision surface: per pixel the most likely class, in its colour, faded by how sure the network is.
// outputs: array of per-class maps (probabilities), or one map (regression values).
export function paintSurface(canvas, outputs, grid, problem) {
  const size = canvas.width;
  const ctx = canvas.getContext("2d");
  const small = document.createElement("canvas");
  small.width = grid; small.height = grid;
  const sctx = small.getContext("2d");
  const image = sctx.createImageData(grid, grid);
  const K = outputs.length;
  for (let i = 0; i < grid * grid; i++) {
    let c;
    if (problem === "regression") {
      c = diverging(LIGHT * outputs[0][i]);
    } else if (K === 2) {
      c = diverging(LIGHT * (outputs[1][i] - outputs[0][i]));  // P(1) - P(0): TF Playground's -1..1 output
    } else {
      let best = 0;
      for (let k = 1; k < K; k++) if (outputs[k][i] > outputs[best][i]) best = k;
      c = faded(classColor(best), LIGHT * (outputs[best][i] - 1 / K) / (1 - 1 / K));
    }
    image.data[4 * i] = c[0]; image.data[4 * i + 1] = c[1]; image.data[4 * i + 2] = c[2]; image.data[4 * i + 3] = 255;
  }
  sctx.putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, size, size);
}

// Data points over the surface; extent = [xmin, xmax, ymin, ymax] of the picture.
export function paintPoints(canvas, points, extent, problem, test) {
  if (!points) return;
  const ctx = canvas.getContext("2d");
  const size = canvas.width;
  const [x0, x1, y0, y1] = extent;
  for (let i = 0; i < points.xy.length; i++) {
    const [x, y] = points.xy[i];
    const px = (x - x0) / (x1 - x0) * size, py = (y1 - y) / (y1 - y0) * size;
    const label = points.label[i];
    const color = problem === "regression" ? diverging(label) : classColor(label);
    ctx.beginPath();
    ctx.arc(px, py, 3, 0, 2 * Math.PI);
    ctx.fillStyle = css(color);
    ctx.fill();
    ctx.lineWidth = 1;
    ctx.strokeStyle = test ? "black" : "white";
    ctx.stroke();
  }
}

export function markPoint(canvas, xy, extent) {
  const ctx = canvas.getContext("2d");
  const size = canvas.width;
  const [x0, x1, y0, y1] = extent;
  const px = (xy[0] - x0) / (x1 - x0) * size, py = (y1 - xy[1]) / (y1 - y0) * size;
  ctx.beginPath();
  ctx.arc(px, py, 7, 0, 2 * Math.PI);
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#183d4e";
  ctx.stroke();
}

// Train (grey) and test (black) loss per frame, as TensorFlow Playground draws them.
export function paintCurve(canvas, curve) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const finite = curve.filter((p) => Number.isFinite(p[1]) && Number.isFinite(p[2]));
  if (finite.length < 2) return;
  const e0 = finite[0][0], e1 = finite[finite.length - 1][0] || 1;
  let top = 0;
  for (const p of finite) top = Math.max(top, p[1], p[2]);
  top = top || 1;
  for (const [column, color] of [[1, "#999"], [2, "#000"]]) {
    ctx.beginPath();
    finite.forEach((p, i) => {
      const x = (p[0] - e0) / Math.max(1, e1 - e0) * canvas.width;
      const y = canvas.height - p[column] / top * (canvas.height - 2) - 1;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }
}
