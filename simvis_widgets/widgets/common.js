// Shared front-end code of the simvis-widgets: a plain ES module, no build step. Python puts this file in
// front of each widget's module (widgets/_bundle.py); node imports it directly for the parity test.
//
// The kernel sends, once per pair, the pairwise contribution matrix P (N_A x N_B, row-major, float32 or
// float16) -- or, for large grids, the projected shares Q_A (N_A x D), Q_B (N_B x D) and the scale, with
// P = scale * Q_A Q_B^T. Everything interactive is computed here:
//   hover cell i of A  -> row i of P over B        hover cell j of B -> column j of P over A
//   paint a mask on A  -> sum_i w_i P[i, :] over B  (w_i = fraction of cell i covered, exact area)
// The pure functions are exported so a test can pin them to the Python Explanation (node, no DOM).

// ------------------------------------------------------------------------------------------------
// Maths (no DOM)
// ------------------------------------------------------------------------------------------------

const HALF_TABLE = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    let v;
    if (exp === 0) v = frac * 2 ** -24;
    else if (exp === 31) v = frac ? NaN : Infinity;
    else v = (1 + frac / 1024) * 2 ** (exp - 15);
    table[h] = sign * v;
  }
  return table;
})();

/** Decode little-endian float32 / float16 bytes (DataView, ArrayBuffer or typed array) to a Float32Array. */
export function decodeFloats(data, dtype) {
  const view = data instanceof DataView ? data : ArrayBuffer.isView(data)
    ? new DataView(data.buffer, data.byteOffset, data.byteLength) : new DataView(data);
  if (dtype === "float16") {
    const n = view.byteLength >> 1;
    const out = new Float32Array(n);
    for (let k = 0; k < n; k++) out[k] = HALF_TABLE[view.getUint16(2 * k, true)];
    return out;
  }
  if (dtype !== "float32") throw new Error(`unsupported dtype ${dtype}`);
  const n = view.byteLength >> 2;
  if (view.byteOffset % 4 === 0) return new Float32Array(view.buffer.slice(view.byteOffset, view.byteOffset + 4 * n));
  const out = new Float32Array(n);
  for (let k = 0; k < n; k++) out[k] = view.getFloat32(4 * k, true);
  return out;
}

/** The contribution source of a pair: P itself, or its factors. `side` "a": rows; "b": columns. */
export class Contributions {
  constructor({ nA, nB, pairwise = null, sharesA = null, sharesB = null, dim = 0, scale = 1 }) {
    this.nA = nA; this.nB = nB; this.P = pairwise;
    this.QA = sharesA; this.QB = sharesB; this.D = dim; this.scale = scale;
  }
  /** Map over the other image of cell `i` of `side`: a row (side a) or column (side b) of P. */
  point(side, i) {
    return this.weighted(side, null, i);
  }
  /** sum_i w_i P[i, :] (side a, over B) or sum_j w_j P[:, j] (side b, over A); `only` = one cell. */
  weighted(side, w, only = -1) {
    const { nA, nB } = this;
    const nSrc = side === "a" ? nA : nB;
    const nDst = side === "a" ? nB : nA;
    const out = new Float32Array(nDst);
    if (this.P) {
      const P = this.P;
      for (let s = 0; s < nSrc; s++) {
        const ws = only >= 0 ? (s === only ? 1 : 0) : w[s];
        if (ws === 0) continue;
        if (side === "a") {
          const base = s * nB;
          for (let d = 0; d < nB; d++) out[d] += ws * P[base + d];
        } else {
          for (let d = 0; d < nA; d++) out[d] += ws * P[d * nB + s];
        }
      }
      return out;
    }
    // Factorised: q = sum_s w_s Q_src[s] (D), then out = scale * Q_dst q.
    const { D } = this;
    const src = side === "a" ? this.QA : this.QB;
    const dst = side === "a" ? this.QB : this.QA;
    const q = new Float32Array(D);
    for (let s = 0; s < nSrc; s++) {
      const ws = only >= 0 ? (s === only ? 1 : 0) : w[s];
      if (ws === 0) continue;
      const base = s * D;
      for (let k = 0; k < D; k++) q[k] += ws * src[base + k];
    }
    for (let d = 0; d < nDst; d++) {
      let acc = 0;
      const base = d * D;
      for (let k = 0; k < D; k++) acc += dst[base + k] * q[k];
      out[d] = acc * this.scale;
    }
    return out;
  }
}

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

/** Cell weights of a pixel mask (Uint8Array H*W, 0..255 = 0..1): the exact covered fraction of each cell. */
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

/** Call `handler` for every pointer move on `target` as early as the browser can: Chromium's
 * "pointerrawupdate" arrives as soon as the input does, while "pointermove" waits for the next animation
 * frame (measured: ~5 ms p50 of pure queueing). Both are listened to (synthetic events and other browsers
 * only send "pointermove"); the later copy of a move already handled is skipped. */
export function onPointerMove(target, handler) {
  let last = -1;
  const once = (e) => {
    if (e.timeStamp === last && e.type === "pointermove") return;
    last = e.timeStamp;
    handler(e);
  };
  if (typeof window !== "undefined" && "onpointerrawupdate" in window) target.addEventListener("pointerrawupdate", once);
  target.addEventListener("pointermove", once);
}

/** Index of the largest value. */
export function argmax(values) {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k] > values[best]) best = k;
  return best;
}

export function maxAbs(...arrays) {
  let v = 0;
  for (const a of arrays) if (a) for (let k = 0; k < a.length; k++) v = Math.max(v, Math.abs(a[k]));
  return v > 0 ? v : 1;
}

export function sum(values) {
  let s = 0;
  for (let k = 0; k < values.length; k++) s += values[k];
  return s;
}

// ------------------------------------------------------------------------------------------------
// View
// ------------------------------------------------------------------------------------------------

export const fmt = (v, digits = 4) => (v >= 0 ? "+" : "") + v.toFixed(digits);
export const pct = (part, whole) => (whole ? `${((100 * part) / whole).toFixed(1)} %` : "n/a");

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

/** Set a node's text only when it changes (no needless DOM writes, hence no needless layouts). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Make `root` a focusable widget whose keys Jupyter leaves alone. */
export function initRoot(root, kind) {
  root.classList.add("simvis-widget", kind);
  root.setAttribute("tabindex", "0");
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("data-p-suppress-shortcuts", "true");
}

/** A colour bar: the colour table as a strip, with -v, 0 and +v labels set by `label(v)`. */
export class ColorBar {
  constructor() {
    this.canvas = el("canvas", { class: "sv-colorbar-canvas", width: "256", height: "12" });
    this.labels = el("div", { class: "sv-colorbar-labels" }, el("span"), el("span", {}, "0"), el("span"));
    this.root = el("div", { class: "sv-colorbar" }, this.canvas, this.labels);
  }
  paint(lut) {
    const img = new ImageData(256, 12);
    for (let x = 0; x < 256; x++) for (let y = 0; y < 12; y++) img.data.set([lut[3 * x], lut[3 * x + 1], lut[3 * x + 2], 255], 4 * (y * 256 + x));
    this.canvas.getContext("2d").putImageData(img, 0, 0);
  }
  label(v) {
    const [lo, , hi] = this.labels.children;
    setText(lo, (-v).toExponential(2));
    setText(hi, v.toExponential(2));
  }
}

/** One image with its heat layer (colour-mapped cell values) and its mark layer (grid, cells, mask, brush). */
export class Panel {
  constructor(side, view) {
    this.side = side;
    this.view = view;
    this.image = el("canvas", { class: "sv-layer sv-image", "data-testid": `image-${side}` });
    this.heat = el("canvas", { class: "sv-layer sv-heat", "data-testid": `heat-${side}` });
    this.mark = el("canvas", { class: "sv-layer sv-mark", "data-testid": `mark-${side}` });
    this.small = document.createElement("canvas");
    this.caption = el("div", { class: "sv-caption", "data-testid": `caption-${side}` });
    this.stack = el("div", { class: "sv-stack" }, this.image, this.heat, this.mark);
    this.root = el("div", { class: "sv-panel" }, el("div", { class: "sv-label" }, `image ${side.toUpperCase()}`), this.stack, this.caption);
    this.mask = null; // Uint8Array H*W (0 / 255)
    this.weights = null; // Float32Array of cell weights, kept in step with the mask
    this.shown = null; // values currently drawn on the heat layer
    this.lastPoint = null;
  }

  setImage(bitmap, H, W, gh, gw) {
    this.H = H; this.W = W; this.gh = gh; this.gw = gw;
    for (const c of [this.image, this.heat, this.mark]) { c.width = W; c.height = H; }
    this.stack.style.aspectRatio = `${W} / ${H}`;
    this.image.getContext("2d").drawImage(bitmap, 0, 0, W, H);
    this.small.width = gw; this.small.height = gh;
    this.rows = axisOverlaps(H, gh);
    this.cols = axisOverlaps(W, gw);
    this.cachedRect = null;
    this.setMask(null);
  }

  /** The mark canvas's box, measured once and kept until something may move it: reading it on every
   * pointer event would force a layout of the whole page after each draw. */
  rect() {
    if (!this.cachedRect) {
      this.cachedRect = this.mark.getBoundingClientRect();
      if (!this.watching) {
        this.watching = true;
        const forget = () => { this.cachedRect = null; };
        window.addEventListener("scroll", forget, { capture: true, passive: true });
        window.addEventListener("resize", forget, { passive: true });
        this.mark.addEventListener("pointerenter", forget, { passive: true });
        if (typeof ResizeObserver !== "undefined") new ResizeObserver(forget).observe(this.mark);
      }
    }
    return this.cachedRect;
  }

  /** Image pixel and cell under a pointer event. */
  locate(event) {
    const rect = this.rect();
    const x = ((event.clientX - rect.left) / rect.width) * this.W;
    const y = ((event.clientY - rect.top) / rect.height) * this.H;
    const inside = x >= 0 && y >= 0 && x < this.W && y < this.H;
    const row = Math.min(this.gh - 1, Math.max(0, Math.floor((y / this.H) * this.gh)));
    const col = Math.min(this.gw - 1, Math.max(0, Math.floor((x / this.W) * this.gw)));
    return { x, y, row, col, inside };
  }

  drawHeat(values, vmax, lut, opacity) {
    const ctx = this.heat.getContext("2d");
    ctx.clearRect(0, 0, this.W, this.H);
    this.shown = values;
    this.vmax = vmax;
    if (this.opacity !== opacity) { this.opacity = opacity; this.heat.style.opacity = String(opacity); }
    if (!values) return;
    const img = new ImageData(this.gw, this.gh);
    for (let k = 0; k < values.length; k++) {
      const t = Math.max(0, Math.min(255, Math.round(((values[k] / vmax + 1) / 2) * 255)));
      img.data[4 * k] = lut[3 * t];
      img.data[4 * k + 1] = lut[3 * t + 1];
      img.data[4 * k + 2] = lut[3 * t + 2];
      img.data[4 * k + 3] = 255;
    }
    this.small.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "low"; // bilinear: cell centres keep their exact colour
    ctx.drawImage(this.small, 0, 0, this.W, this.H);
  }

  drawMarks({ grid, cell, match, showMask, brush }) {
    const ctx = this.mark.getContext("2d");
    const { W, H, gh, gw } = this;
    ctx.clearRect(0, 0, W, H);
    const lw = Math.max(1, W / 300);
    if (grid) {
      ctx.strokeStyle = "rgba(255,255,255,0.55)";
      ctx.lineWidth = lw;
      ctx.beginPath();
      for (let r = 1; r < gh; r++) { ctx.moveTo(0, (r * H) / gh); ctx.lineTo(W, (r * H) / gh); }
      for (let c = 1; c < gw; c++) { ctx.moveTo((c * W) / gw, 0); ctx.lineTo((c * W) / gw, H); }
      ctx.stroke();
    }
    if (showMask && this.weights && this.maskPixels > 0) {
      if (this.overlayDirty) { this.overlayCanvas.getContext("2d").putImageData(this.overlay, 0, 0); this.overlayDirty = false; }
      ctx.drawImage(this.overlayCanvas, 0, 0);
    }
    const box = (rc, colour, dash) => {
      ctx.setLineDash(dash);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 3 * lw;
      ctx.strokeRect((rc[1] * W) / gw, (rc[0] * H) / gh, W / gw, H / gh);
      ctx.setLineDash([]);
    };
    if (cell) box(cell, "#00ff66", []);
    if (match) box(match, "#ffe100", [6 * lw, 4 * lw]);
    if (brush) {
      ctx.strokeStyle = brush.erase ? "#ff3355" : "#00ff66";
      ctx.lineWidth = lw;
      ctx.beginPath();
      ctx.arc(brush.x, brush.y, brush.r, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  /** Stamp a disc into the mask; keeps the cell weights in step (each pixel adds its exact overlaps). */
  stamp(cx, cy, r, erase) {
    const { W, H, gw } = this;
    const value = erase ? 0 : 255;
    const r2 = r * r;
    for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(H - 1, Math.ceil(cy + r)); y++) {
      for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(W - 1, Math.ceil(cx + r)); x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (dx * dx + dy * dy > r2) continue;
        const k = y * W + x;
        if (this.mask[k] === value) continue;
        const delta = (value - this.mask[k]) / 255;
        this.mask[k] = value;
        this.paintOverlay(k, value);
        this.maskPixels += delta;
        for (const [row, fr] of this.rows[y]) for (const [col, fc] of this.cols[x]) this.weights[row * gw + col] += delta * fr * fc;
      }
    }
  }

  strokeTo(x, y, r, erase) {
    const last = this.lastPoint || { x, y };
    const steps = Math.max(1, Math.ceil(Math.hypot(x - last.x, y - last.y) / Math.max(1, r / 3)));
    for (let s = 1; s <= steps; s++) this.stamp(last.x + ((x - last.x) * s) / steps, last.y + ((y - last.y) * s) / steps, r, erase);
    this.lastPoint = { x, y };
  }

  /** The mask's colour on the mark layer (kept pixel by pixel, drawn with one putImageData). */
  paintOverlay(k, value) {
    const d = this.overlay.data;
    if (value) { d[4 * k] = 40; d[4 * k + 1] = 230; d[4 * k + 2] = 90; d[4 * k + 3] = Math.round((110 * value) / 255); }
    else d[4 * k + 3] = 0;
    this.overlayDirty = true;
  }

  setMask(pixels) {
    this.mask = pixels || new Uint8Array(this.W * this.H);
    this.overlay = new ImageData(this.W, this.H);
    this.overlayCanvas = this.overlayCanvas || document.createElement("canvas");
    this.overlayCanvas.width = this.W;
    this.overlayCanvas.height = this.H;
    for (let k = 0; k < this.mask.length; k++) if (this.mask[k]) this.paintOverlay(k, this.mask[k]);
    this.overlayDirty = true;
    this.weights = cellWeights(this.mask, this.H, this.W, this.gh, this.gw);
    this.maskPixels = 0;
    for (let k = 0; k < this.mask.length; k++) this.maskPixels += this.mask[k] / 255;
  }
}
