// Colours: TensorFlow Playground's orange (negative, class 0) to white to blue (positive, class 1),
// and one colour per class beyond two.

export const NEGATIVE = [245, 147, 34];
export const POSITIVE = [8, 119, 189];
const WHITE = [232, 234, 235];
export const CLASS_COLORS = [NEGATIVE, POSITIVE, [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

export function classColor(k) {
  if (k < CLASS_COLORS.length) return CLASS_COLORS[k];
  const hue = (k * 137.5) % 360;  // more classes than the palette: spread around the hue circle
  return hslToRgb(hue / 360, 0.6, 0.5);
}

export function css(rgb) { return `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`; }

// v in [-1, 1] -> orange .. white .. blue (values beyond are clamped).
export function diverging(v) {
  if (!Number.isFinite(v)) return [0, 0, 0];
  const t = Math.max(-1, Math.min(1, v));
  const end = t < 0 ? NEGATIVE : POSITIVE;
  const a = Math.abs(t);
  return [WHITE[0] + (end[0] - WHITE[0]) * a, WHITE[1] + (end[1] - WHITE[1]) * a, WHITE[2] + (end[2] - WHITE[2]) * a];
}

// One class's colour faded towards white by its strength a in [0, 1].
export function faded(rgb, a) {
  const t = Math.max(0, Math.min(1, a));
  return [WHITE[0] + (rgb[0] - WHITE[0]) * t, WHITE[1] + (rgb[1] - WHITE[1]) * t, WHITE[2] + (rgb[2] - WHITE[2]) * t];
}

function hslToRgb(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    const a = s * Math.min(l, 1 - l);
    return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)));
  };
  return [f(0), f(8), f(4)];
}
