// "Draw a digit": a canvas to draw on, cut to 8x8 pixels of 0..16 the way the embedded digits were made
// (UCI optdigits: the digit's box scaled into 32x32 bitmap pixels, each 4x4 block counted, 0..16).
const SIDE = 32, BLOCK = 4;

export class DigitPad {
  constructor(canvas, small, onDigit) {
    this.canvas = canvas;
    this.small = small;
    this.onDigit = onDigit;
    this.ctx = canvas.getContext("2d");
    this.clear();
    let drawing = false;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
    };
    canvas.addEventListener("pointerdown", (e) => { drawing = true; this.ctx.beginPath(); this.ctx.moveTo(...at(e)); this.stroke(at(e)); });
    canvas.addEventListener("pointermove", (e) => { if (drawing) this.stroke(at(e)); });
    const end = () => { if (drawing) { drawing = false; this.send(); } };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointerleave", end);
  }

  clear() {
    this.ctx.fillStyle = "white";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    const list = document.getElementById("digit-probs");
    if (list) list.textContent = "";
  }

  stroke([x, y]) {
    this.ctx.lineWidth = this.canvas.width / 10;
    this.ctx.lineCap = "round";
    this.ctx.lineJoin = "round";
    this.ctx.strokeStyle = "black";
    this.ctx.lineTo(x, y);
    this.ctx.stroke();
    this.ctx.beginPath();
    this.ctx.moveTo(x, y);
  }

  // 64 values 0..16, row by row.
  pixels() {
    const { width, height } = this.canvas;
    const data = this.ctx.getImageData(0, 0, width, height).data;
    let x0 = width, x1 = -1, y0 = height, y1 = -1;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      if (data[4 * (y * width + x)] < 128) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    }
    const out = new Array(64).fill(0);
    if (x1 < 0) return out;
    const box = Math.max(x1 - x0 + 1, y1 - y0 + 1);  // keep the aspect ratio, centre the digit
    const cx = (x0 + x1 + 1) / 2, cy = (y0 + y1 + 1) / 2;
    for (let by = 0; by < SIDE; by++) for (let bx = 0; bx < SIDE; bx++) {
      const sx = Math.floor(cx + ((bx + 0.5) / SIDE - 0.5) * box);
      const sy = Math.floor(cy + ((by + 0.5) / SIDE - 0.5) * box);
      const on = sx >= 0 && sx < width && sy >= 0 && sy < height && data[4 * (sy * width + sx)] < 128;
      if (on) out[Math.floor(by / BLOCK) * 8 + Math.floor(bx / BLOCK)] += 1;
    }
    return out;
  }

  send() {
    const pixels = this.pixels();
    const ctx = this.small.getContext("2d");
    const cell = this.small.width / 8;
    pixels.forEach((v, i) => {
      const shade = Math.round(255 * (1 - v / 16));
      ctx.fillStyle = `rgb(${shade},${shade},${shade})`;
      ctx.fillRect((i % 8) * cell, Math.floor(i / 8) * cell, cell, cell);
    });
    this.onDigit(pixels);
  }

  show(probabilities, classes) {
    const list = document.getElementById("digit-probs");
    list.textContent = "";
    let best = 0;
    probabilities.forEach((p, k) => { if (p > probabilities[best]) best = k; });
    probabilities.forEach((p, k) => {
      const li = document.createElement("li");
      li.setAttribute("data-value", p);
      li.setAttribute("data-testid", `digit-prob-${k}`);
      li.textContent = `${classes[k]}: ${(100 * p).toFixed(1)}%`;
      if (k === best) li.style.fontWeight = "bold";
      const bar = document.createElement("span");
      bar.style.width = `${Math.round(100 * p)}px`;
      li.appendChild(bar);
      list.appendChild(li);
    });
  }
}
