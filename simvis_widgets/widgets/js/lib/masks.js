// Painted regions: a pixel mask (Uint8Array H*W, 0..255 = 0..1) and its cell weights, the exact fraction of each
// feature cell it covers (what the Python side computes with `cell_weights`). The brush keeps both in step.
import { asBytes } from "./bytes.js";

/** For each of `n` pixels along an axis of `cells` cells: [[cell, fraction of that cell's extent], ...]. */
export function axisOverlaps(n, cells) {
  const size = n / cells;
  const out = [];
  for (let px = 0; px < n; px++) {
    const parts = [];
    const first = Math.floor(px / size);
    for (let c = Math.max(0, first - 1); c <= Math.min(cells - 1, first + 1); c++) {
      const lo = Math.max(c * size, px);
      const hi = Math.min((c + 1) * size, px + 1);
      if (hi > lo) parts.push([c, (hi - lo) / size]);
    }
    out.push(parts);
  }
  return out;
}

/** Cell weights (Float32Array gh*gw) of a pixel mask of H x W: the exact covered fraction of each cell. */
export function cellWeights(mask, H, W, gh, gw) {
  const rows = axisOverlaps(H, gh);
  const cols = axisOverlaps(W, gw);
  const w = new Float32Array(gh * gw);
  for (let y = 0; y < H; y++) {
    const rowParts = rows[y];
    for (let x = 0; x < W; x++) {
      const m = mask[y * W + x];
      if (!m) continue;
      for (const [r, fr] of rowParts) for (const [c, fc] of cols[x]) w[r * gw + c] += (m / 255) * fr * fc;
    }
  }
  return w;
}

/** A filled rectangle between two corners (pixel coordinates, any order, clipped to the image) as a mask. */
export function boxMask(H, W, x0, y0, x1, y1) {
  const mask = new Uint8Array(W * H);
  const [xa, xb] = [Math.max(0, Math.floor(Math.min(x0, x1))), Math.min(W, Math.ceil(Math.max(x0, x1)))];
  const [ya, yb] = [Math.max(0, Math.floor(Math.min(y0, y1))), Math.min(H, Math.ceil(Math.max(y0, y1)))];
  for (let y = ya; y < yb; y++) mask.fill(255, y * W + xa, y * W + xb);
  return mask;
}

/** A copy of the pixels of a mask trait value ({shape: [H, W], data}) when it is H x W, else null. */
export function maskFromTrait(value, H, W) {
  if (!value || !value.data) return null;
  const [h, w] = value.shape;
  return h === H && w === W ? new Uint8Array(asBytes(value.data)) : null;
}

/** The mask of one image with its cell weights and painted area, kept in step by the brush. `onPixel(k, value)`
 * hears of every pixel that changes (the panel's overlay follows it). */
export class CellMask {
  constructor(H, W, gh, gw, onPixel = () => {}) {
    this.H = H;
    this.W = W;
    this.gh = gh;
    this.gw = gw;
    this.onPixel = onPixel;
    this.rows = axisOverlaps(H, gh);
    this.cols = axisOverlaps(W, gw);
    this.lastPoint = null; // the previous point of the current stroke
    this.set(null);
  }

  /** Replace the mask by `pixels` (Uint8Array H*W, kept, not copied) or an empty one. */
  set(pixels) {
    this.mask = pixels || new Uint8Array(this.W * this.H);
    this.weights = cellWeights(this.mask, this.H, this.W, this.gh, this.gw);
    this.pixels = 0; // painted area in pixels (partly painted pixels count their fraction)
    for (let k = 0; k < this.mask.length; k++) this.pixels += this.mask[k] / 255;
  }

  /** Paint (or erase) the pixels whose centres lie within `r` of (cx, cy); each adds its exact cell overlaps. */
  stamp(cx, cy, r, erase) {
    const { W, H, gw, mask, weights } = this;
    const value = erase ? 0 : 255;
    const r2 = r * r;
    for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(H - 1, Math.ceil(cy + r)); y++) {
      for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(W - 1, Math.ceil(cx + r)); x++) {
        const dx = x + 0.5 - cx;
        const dy = y + 0.5 - cy;
        if (dx * dx + dy * dy > r2) continue;
        const k = y * W + x;
        if (mask[k] === value) continue;
        const delta = (value - mask[k]) / 255;
        mask[k] = value;
        this.onPixel(k, value);
        this.pixels += delta;
        for (const [row, fr] of this.rows[y])
          for (const [col, fc] of this.cols[x]) weights[row * gw + col] += delta * fr * fc;
      }
    }
  }

  /** Continue the current stroke to (x, y): stamps every r/3 px (at least 1 px) along the way. */
  strokeTo(x, y, r, erase) {
    const last = this.lastPoint || { x, y };
    const steps = Math.max(1, Math.ceil(Math.hypot(x - last.x, y - last.y) / Math.max(1, r / 3)));
    for (let s = 1; s <= steps; s++) {
      this.stamp(last.x + ((x - last.x) * s) / steps, last.y + ((y - last.y) * s) / steps, r, erase);
    }
    this.lastPoint = { x, y };
  }

  /** The mask as a trait value ({shape: [H, W], data: DataView of a copy}), or null when nothing is painted. */
  toTrait() {
    return this.pixels > 0 ? { shape: [this.H, this.W], data: new DataView(this.mask.slice().buffer) } : null;
  }
}
