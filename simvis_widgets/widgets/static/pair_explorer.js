// simvis_widgets/widgets/js/lib/bytes.js
function asBytes(data) {
  return ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
}
var halfTable = null;
function halfToFloat() {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 32768 ? -1 : 1;
    const exp = h >> 10 & 31;
    const frac = h & 1023;
    let v;
    if (exp === 0) v = frac * 2 ** -24;
    else if (exp === 31) v = frac ? NaN : Infinity;
    else v = (1 + frac / 1024) * 2 ** (exp - 15);
    halfTable[h] = sign * v;
  }
  return halfTable;
}
function decodeFloats(data, dtype) {
  const bytes = asBytes(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "float16") {
    const table = halfToFloat();
    const out2 = new Float32Array(view.byteLength >> 1);
    for (let k = 0; k < out2.length; k++) out2[k] = table[view.getUint16(2 * k, true)];
    return out2;
  }
  if (dtype !== "float32") throw new Error(`unsupported dtype ${dtype}`);
  const n = view.byteLength >> 2;
  if (view.byteOffset % 4 === 0) return new Float32Array(view.buffer.slice(view.byteOffset, view.byteOffset + 4 * n));
  const out = new Float32Array(n);
  for (let k = 0; k < n; k++) out[k] = view.getFloat32(4 * k, true);
  return out;
}
function decodeImage(data, type = "image/png") {
  return createImageBitmap(new Blob([asBytes(data)], { type }));
}

// simvis_widgets/widgets/js/lib/contributions.js
var Contributions = class {
  constructor({ nA, nB, pairwise = null, sharesA = null, sharesB = null, dim = 0, scale = 1 }) {
    this.nA = nA;
    this.nB = nB;
    this.P = pairwise;
    this.QA = sharesA;
    this.QB = sharesB;
    this.D = dim;
    this.scale = scale;
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
        const ws = only >= 0 ? s === only ? 1 : 0 : w[s];
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
    const { D } = this;
    const src = side === "a" ? this.QA : this.QB;
    const dst = side === "a" ? this.QB : this.QA;
    const q = new Float32Array(D);
    for (let s = 0; s < nSrc; s++) {
      const ws = only >= 0 ? s === only ? 1 : 0 : w[s];
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
};
var PAYLOAD_KEYS = [
  "grid_a",
  "grid_b",
  "matrix_kind",
  "matrix_dtype",
  "pairwise",
  "matrix_scale",
  "shares_a",
  "shares_b",
  "factor_dim",
  "scale",
  "map_a",
  "map_b"
];
function decodePayload(p) {
  const nA = p.grid_a[0] * p.grid_a[1];
  const nB = p.grid_b[0] * p.grid_b[1];
  let contrib;
  if (p.matrix_kind === "pairwise") {
    const P = decodeFloats(p.pairwise, p.matrix_dtype);
    if (p.matrix_scale !== 1) for (let k = 0; k < P.length; k++) P[k] *= p.matrix_scale;
    contrib = new Contributions({ nA, nB, pairwise: P });
  } else {
    const sharesA = decodeFloats(p.shares_a, p.matrix_dtype);
    const sharesB = decodeFloats(p.shares_b, p.matrix_dtype);
    contrib = new Contributions({ nA, nB, dim: p.factor_dim, scale: p.scale, sharesA, sharesB });
  }
  return { contrib, mapA: decodeFloats(p.map_a, "float32"), mapB: decodeFloats(p.map_b, "float32") };
}

// simvis_widgets/widgets/js/lib/hooks.js
function testHooksEnabled() {
  return Boolean(globalThis.__SIMVIS_TEST_HOOKS__ || globalThis.__SIMVIS_TRACE__);
}
function exposeView(root, view) {
  if (!testHooksEnabled()) return () => {
  };
  root.__simvis = view;
  return () => {
    root.__simvis = null;
  };
}
function tracing() {
  return Boolean(globalThis.__SIMVIS_TRACE__);
}

// simvis_widgets/widgets/js/lib/colour.js
function lutIndex(value, vmax) {
  return Math.max(0, Math.min(255, Math.round((value / vmax + 1) / 2 * 255)));
}
function colourCells(values, vmax, lut, rgba) {
  for (let k = 0; k < values.length; k++) {
    const t = 3 * lutIndex(values[k], vmax);
    rgba[4 * k] = lut[t];
    rgba[4 * k + 1] = lut[t + 1];
    rgba[4 * k + 2] = lut[t + 2];
    rgba[4 * k + 3] = 255;
  }
  return rgba;
}
function drawCellMap(ctx, small, values, vmax, lut) {
  const img = new ImageData(small.width, small.height);
  colourCells(values, vmax, lut, img.data);
  small.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "low";
  ctx.drawImage(small, 0, 0, ctx.canvas.width, ctx.canvas.height);
}

// simvis_widgets/widgets/js/lib/masks.js
function axisOverlaps(n, cells) {
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
function cellWeights(mask, H, W, gh, gw) {
  const rows = axisOverlaps(H, gh);
  const cols = axisOverlaps(W, gw);
  const w = new Float32Array(gh * gw);
  for (let y = 0; y < H; y++) {
    const rowParts = rows[y];
    for (let x = 0; x < W; x++) {
      const m = mask[y * W + x];
      if (!m) continue;
      for (const [r, fr] of rowParts) for (const [c, fc] of cols[x]) w[r * gw + c] += m / 255 * fr * fc;
    }
  }
  return w;
}
function boxMask(H, W, x0, y0, x1, y1) {
  const mask = new Uint8Array(W * H);
  const [xa, xb] = [Math.max(0, Math.floor(Math.min(x0, x1))), Math.min(W, Math.ceil(Math.max(x0, x1)))];
  const [ya, yb] = [Math.max(0, Math.floor(Math.min(y0, y1))), Math.min(H, Math.ceil(Math.max(y0, y1)))];
  for (let y = ya; y < yb; y++) mask.fill(255, y * W + xa, y * W + xb);
  return mask;
}
function maskFromTrait(value, H, W) {
  if (!value || !value.data) return null;
  const [h, w] = value.shape;
  return h === H && w === W ? new Uint8Array(asBytes(value.data)) : null;
}
var CellMask = class {
  constructor(H, W, gh, gw, onPixel = () => {
  }) {
    this.H = H;
    this.W = W;
    this.gh = gh;
    this.gw = gw;
    this.onPixel = onPixel;
    this.rows = axisOverlaps(H, gh);
    this.cols = axisOverlaps(W, gw);
    this.lastPoint = null;
    this.set(null);
  }
  /** Replace the mask by `pixels` (Uint8Array H*W, kept, not copied) or an empty one. */
  set(pixels) {
    this.mask = pixels || new Uint8Array(this.W * this.H);
    this.weights = cellWeights(this.mask, this.H, this.W, this.gh, this.gw);
    this.pixels = 0;
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
      this.stamp(last.x + (x - last.x) * s / steps, last.y + (y - last.y) * s / steps, r, erase);
    }
    this.lastPoint = { x, y };
  }
  /** The mask as a trait value ({shape: [H, W], data: DataView of a copy}), or null when nothing is painted. */
  toTrait() {
    return this.pixels > 0 ? { shape: [this.H, this.W], data: new DataView(this.mask.slice().buffer) } : null;
  }
};

// simvis_widgets/widgets/js/lib/panel.js
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
function initRoot(root, kind) {
  root.classList.add("simvis-widget", kind);
  root.setAttribute("tabindex", "0");
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("data-p-suppress-shortcuts", "true");
}
function onPointerMove(target, handler) {
  let last = -1;
  const once = (e) => {
    if (e.timeStamp === last && e.type === "pointermove") return;
    last = e.timeStamp;
    handler(e);
  };
  if (typeof window !== "undefined" && "onpointerrawupdate" in window && window.top === window)
    target.addEventListener("pointerrawupdate", once);
  target.addEventListener("pointermove", once);
}
var ColorBar = class {
  constructor() {
    this.canvas = el("canvas", { class: "sv-colorbar-canvas", width: "256", height: "12" });
    this.labels = el("div", { class: "sv-colorbar-labels" }, el("span"), el("span", {}, "0"), el("span"));
    this.root = el("div", { class: "sv-colorbar" }, this.canvas, this.labels);
  }
  paint(lut) {
    const img = new ImageData(256, 12);
    for (let x = 0; x < 256; x++) {
      for (let y = 0; y < 12; y++) img.data.set([lut[3 * x], lut[3 * x + 1], lut[3 * x + 2], 255], 4 * (y * 256 + x));
    }
    this.canvas.getContext("2d").putImageData(img, 0, 0);
  }
  label(v) {
    const [lo, , hi] = this.labels.children;
    setText(lo, (-v).toExponential(2));
    setText(hi, v.toExponential(2));
  }
};
var Panel = class {
  constructor(side, view) {
    this.side = side;
    this.view = view;
    this.image = el("canvas", { class: "sv-layer sv-image", "data-testid": `image-${side}` });
    this.heat = el("canvas", { class: "sv-layer sv-heat", "data-testid": `heat-${side}` });
    this.mark = el("canvas", { class: "sv-layer sv-mark", "data-testid": `mark-${side}` });
    this.small = document.createElement("canvas");
    this.caption = el("div", { class: "sv-caption", "data-testid": `caption-${side}` });
    this.stack = el("div", { class: "sv-stack" }, this.image, this.heat, this.mark);
    const label = el("div", { class: "sv-label" }, `image ${side.toUpperCase()}`);
    this.root = el("div", { class: "sv-panel" }, label, this.stack, this.caption);
    this.cells = null;
    this.shown = null;
  }
  /** Pixel mask (Uint8Array H*W, 0 / 255). */
  get mask() {
    return this.cells ? this.cells.mask : null;
  }
  /** Float32Array of cell weights, kept in step with the mask. */
  get weights() {
    return this.cells ? this.cells.weights : null;
  }
  get maskPixels() {
    return this.cells ? this.cells.pixels : 0;
  }
  setImage(bitmap, H, W, gh, gw) {
    this.H = H;
    this.W = W;
    this.gh = gh;
    this.gw = gw;
    for (const c of [this.image, this.heat, this.mark]) {
      c.width = W;
      c.height = H;
    }
    this.stack.style.aspectRatio = `${W} / ${H}`;
    this.image.getContext("2d").drawImage(bitmap, 0, 0, W, H);
    this.small.width = gw;
    this.small.height = gh;
    this.cachedRect = null;
    this.cells = new CellMask(H, W, gh, gw, (k, value) => this.paintOverlay(k, value));
    this.setMask(null);
  }
  /** The mark canvas's box, measured once and kept until something may move it: reading it on every
   * pointer event would force a layout of the whole page after each draw. */
  rect() {
    if (!this.cachedRect) {
      this.cachedRect = this.mark.getBoundingClientRect();
      if (!this.watching) {
        this.watching = true;
        const forget = () => {
          this.cachedRect = null;
        };
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
    const x = (event.clientX - rect.left) / rect.width * this.W;
    const y = (event.clientY - rect.top) / rect.height * this.H;
    const inside = x >= 0 && y >= 0 && x < this.W && y < this.H;
    const row = Math.min(this.gh - 1, Math.max(0, Math.floor(y / this.H * this.gh)));
    const col = Math.min(this.gw - 1, Math.max(0, Math.floor(x / this.W * this.gw)));
    return { x, y, row, col, inside };
  }
  drawHeat(values, vmax, lut, opacity) {
    const ctx = this.heat.getContext("2d");
    ctx.clearRect(0, 0, this.W, this.H);
    this.shown = values;
    this.vmax = vmax;
    if (this.opacity !== opacity) {
      this.opacity = opacity;
      this.heat.style.opacity = String(opacity);
    }
    if (values) drawCellMap(ctx, this.small, values, vmax, lut);
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
      for (let r = 1; r < gh; r++) {
        ctx.moveTo(0, r * H / gh);
        ctx.lineTo(W, r * H / gh);
      }
      for (let c = 1; c < gw; c++) {
        ctx.moveTo(c * W / gw, 0);
        ctx.lineTo(c * W / gw, H);
      }
      ctx.stroke();
    }
    if (showMask && this.maskPixels > 0) {
      if (this.overlayDirty) {
        this.overlayCanvas.getContext("2d").putImageData(this.overlay, 0, 0);
        this.overlayDirty = false;
      }
      ctx.drawImage(this.overlayCanvas, 0, 0);
    }
    const box = (rc, colour, dash) => {
      ctx.setLineDash(dash);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 3 * lw;
      ctx.strokeRect(rc[1] * W / gw, rc[0] * H / gh, W / gw, H / gh);
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
  /** Continue the current brush stroke to image pixel (x, y) (see CellMask.strokeTo). */
  strokeTo(x, y, r, erase) {
    this.cells.strokeTo(x, y, r, erase);
  }
  /** End the current stroke: the next strokeTo starts a new one. */
  endStroke() {
    this.cells.lastPoint = null;
  }
  /** The mask's colour on the mark layer (kept pixel by pixel, drawn with one putImageData). */
  paintOverlay(k, value) {
    const d = this.overlay.data;
    if (value) {
      d[4 * k] = 40;
      d[4 * k + 1] = 230;
      d[4 * k + 2] = 90;
      d[4 * k + 3] = Math.round(110 * value / 255);
    } else d[4 * k + 3] = 0;
    this.overlayDirty = true;
  }
  /** Show `pixels` (Uint8Array H*W, kept) as the mask, or clear it (null). */
  setMask(pixels) {
    this.overlay = new ImageData(this.W, this.H);
    this.overlayCanvas = this.overlayCanvas || document.createElement("canvas");
    this.overlayCanvas.width = this.W;
    this.overlayCanvas.height = this.H;
    this.cells.set(pixels);
    const mask = this.cells.mask;
    for (let k = 0; k < mask.length; k++) if (mask[k]) this.paintOverlay(k, mask[k]);
    this.overlayDirty = true;
  }
  /** The mask as a trait value, or null when nothing is painted (see CellMask.toTrait). */
  maskTrait() {
    return this.cells.toTrait();
  }
};

// simvis_widgets/widgets/js/lib/readouts.js
var fmt = (v, digits = 4) => (v >= 0 ? "+" : "") + v.toFixed(digits);
var pct = (part, whole) => whole ? `${(100 * part / whole).toFixed(1)} %` : "n/a";
function argmax(values) {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k] > values[best]) best = k;
  return best;
}
function maxAbs(...arrays) {
  let v = 0;
  for (const a of arrays) if (a) for (let k = 0; k < a.length; k++) v = Math.max(v, Math.abs(a[k]));
  return v > 0 ? v : 1;
}
function sum(values) {
  let s = 0;
  for (let k = 0; k < values.length; k++) s += values[k];
  return s;
}
function regionScore(weights, map) {
  let s = 0;
  for (let k = 0; k < map.length; k++) s += weights[k] * map[k];
  return s;
}
function bestCell(values, gw) {
  const index = argmax(values);
  return { index, rc: [Math.floor(index / gw), index % gw] };
}

// simvis_widgets/widgets/js/lib/pair_view.js
var MODES = ["overview", "hover", "paint"];
var CMAPS = ["RdBu_r", "coolwarm", "bwr", "seismic", "PiYG", "PuOr_r", "viridis"];
var PairView = class {
  constructor(model, root, kind = "simvis-pair") {
    this.model = model;
    this.root = root;
    this.isStatic = Boolean(model.get("_static"));
    this.a = new Panel("a", this);
    this.b = new Panel("b", this);
    this.hoverSide = null;
    this.painting = null;
    this.pending = null;
    this.lastDraw = -1e9;
    this.trace = [];
    this.buildControls();
    initRoot(root, kind);
    const panels = el("div", { class: "sv-panels" }, this.a.root, this.b.root);
    root.append(this.toolbar, panels, this.colorbar.root, this.readout);
    root.addEventListener("keydown", (e) => this.onKey(e));
    for (const panel of [this.a, this.b]) this.bindPointer(panel);
  }
  // ---- data --------------------------------------------------------------------------------------
  async loadPair() {
    const m = this.model;
    const token = this.loadToken = (this.loadToken || 0) + 1;
    const [ha, wa] = m.get("grid_a");
    const [hb, wb] = m.get("grid_b");
    const payload = decodePayload(Object.fromEntries(PAYLOAD_KEYS.map((k) => [k, m.get(k)])));
    const [Ha, Wa] = m.get("size_a");
    const [Hb, Wb] = m.get("size_b");
    const [bitmapA, bitmapB] = await Promise.all([decodeImage(m.get("image_a")), decodeImage(m.get("image_b"))]);
    if (token !== this.loadToken) return;
    this.contrib = payload.contrib;
    this.mapA = payload.mapA;
    this.mapB = payload.mapB;
    this.sumA = sum(this.mapA);
    this.sumB = sum(this.mapB);
    this.a.setImage(bitmapA, Ha, Wa, ha, wa);
    this.b.setImage(bitmapB, Hb, Wb, hb, wb);
    this.loadMask("a");
    this.loadMask("b");
    this.loadLut();
    this.ready = true;
    this.root.dataset.ready = String(Number(this.root.dataset.ready || 0) + 1);
    this.draw();
  }
  loadLut() {
    this.lut = asBytes(this.model.get("lut"));
    this.colorbar.paint(this.lut);
  }
  loadMask(side) {
    const panel = this[side];
    panel.setMask(maskFromTrait(this.model.get(`mask_${side}`), panel.H, panel.W));
  }
  syncMask(side) {
    this.model.set(`mask_${side}`, this[side].maskTrait());
    this.model.save_changes();
  }
  // ---- controls ----------------------------------------------------------------------------------
  buildControls() {
    const m = this.model;
    this.modeButtons = {};
    const modes = el("div", { class: "sv-group", role: "group" });
    for (const mode of MODES) {
      const key = mode[0].toUpperCase();
      const b = el(
        "button",
        {
          class: "sv-btn",
          "data-mode": mode,
          title: `${mode} mode (key ${mode[0]})`,
          onclick: () => this.setTrait("mode", mode)
        },
        `${key}${mode.slice(1)}`
      );
      this.modeButtons[mode] = b;
      modes.append(b);
    }
    this.brushInput = el("input", {
      type: "range",
      min: "2",
      max: "120",
      step: "1",
      title: "brush radius in image pixels ([ and ])",
      "data-testid": "brush"
    });
    this.brushInput.addEventListener("input", () => this.setTrait("brush", Number(this.brushInput.value)));
    this.eraseBox = el("input", { type: "checkbox", title: "erase (key e)" });
    this.eraseBox.addEventListener("change", () => this.setTrait("erase", this.eraseBox.checked));
    this.boxBox = el("input", {
      type: "checkbox",
      title: "drag a rectangle instead of a brush (key b)",
      "data-testid": "box"
    });
    this.boxBox.addEventListener("change", () => this.setTrait("box", this.boxBox.checked));
    const clear = el(
      "button",
      { class: "sv-btn", title: "clear both masks (key c)", onclick: () => this.clearMasks() },
      "Clear"
    );
    this.paintGroup = el(
      "div",
      { class: "sv-group" },
      el("label", {}, "brush ", this.brushInput),
      el("label", {}, this.eraseBox, " erase"),
      el("label", {}, this.boxBox, " box"),
      clear
    );
    this.cmapSelect = el("select", { title: "colormap", "data-testid": "cmap" });
    const cmaps = /* @__PURE__ */ new Set([...CMAPS, m.get("cmap")]);
    for (const c of cmaps) this.cmapSelect.append(el("option", { value: c }, c));
    this.cmapSelect.addEventListener("change", () => this.setTrait("cmap", this.cmapSelect.value));
    this.opacityInput = el("input", { type: "range", min: "0", max: "1", step: "0.05", title: "overlay opacity" });
    this.opacityInput.addEventListener("input", () => this.setTrait("opacity", Number(this.opacityInput.value)));
    this.scaleSelect = el(
      "select",
      { title: "colour scale" },
      el("option", { value: "shared" }, "shared scale"),
      el("option", { value: "per-view" }, "per-view scale")
    );
    this.scaleSelect.addEventListener("change", () => this.setTrait("scale_mode", this.scaleSelect.value));
    this.gridBox = el("input", { type: "checkbox", title: "show the feature cells (key g)" });
    this.gridBox.addEventListener("change", () => this.setTrait("show_grid", this.gridBox.checked));
    const swap = this.swapButton = el(
      "button",
      { class: "sv-btn", title: "swap A and B", onclick: () => this.model.send({ event: "swap" }) },
      "Swap"
    );
    const reset = el(
      "button",
      { class: "sv-btn", title: "back to the overview, masks cleared (key r)", onclick: () => this.reset() },
      "Reset"
    );
    if (this.isStatic) swap.disabled = true;
    const view = el(
      "div",
      { class: "sv-group" },
      this.cmapSelect,
      el("label", {}, "opacity ", this.opacityInput),
      this.scaleSelect,
      el("label", {}, this.gridBox, " grid")
    );
    this.toolbar = el(
      "div",
      { class: "sv-toolbar" },
      modes,
      this.paintGroup,
      view,
      el("div", { class: "sv-group" }, swap, reset)
    );
    this.colorbar = new ColorBar();
    this.readoutScore = el("div", { class: "sv-score" });
    this.readoutSums = el("div");
    this.readoutInfo = el("div", { "data-testid": "info" });
    const hint = el(
      "div",
      { class: "sv-hint" },
      "red adds to the similarity, blue subtracts · keys: o h p (modes), e erase, b box, c clear, [ ] brush, g grid, r reset"
    );
    this.readout = el(
      "div",
      { class: "sv-readout", "data-testid": "readout" },
      this.readoutScore,
      this.readoutSums,
      this.readoutInfo,
      hint
    );
  }
  setTrait(name, value) {
    this.model.set(name, value);
    this.model.save_changes();
    this.syncControls();
    this.draw();
  }
  syncControls() {
    const m = this.model;
    for (const [mode, b] of Object.entries(this.modeButtons)) b.classList.toggle("sv-active", m.get("mode") === mode);
    const paintDisplay = m.get("mode") === "paint" ? "" : "none";
    if (this.paintGroup.style.display !== paintDisplay) {
      this.paintGroup.style.display = paintDisplay;
      this.a.cachedRect = this.b.cachedRect = null;
    }
    this.brushInput.value = String(m.get("brush"));
    this.eraseBox.checked = m.get("erase");
    this.boxBox.checked = m.get("box");
    this.cmapSelect.value = m.get("cmap");
    this.opacityInput.value = String(m.get("opacity"));
    this.scaleSelect.value = m.get("scale_mode");
    this.gridBox.checked = m.get("show_grid");
    this.root.dataset.mode = m.get("mode");
  }
  clearMasks() {
    for (const side of ["a", "b"]) {
      this[side].setMask(null);
      this.syncMask(side);
      this.onStroke(this[side], true);
    }
    this.draw();
  }
  reset() {
    this.a.setMask(null);
    this.b.setMask(null);
    this.model.set("mask_a", null);
    this.model.set("mask_b", null);
    this.model.set("hover_a", []);
    this.model.set("hover_b", []);
    this.model.set("mode", "overview");
    this.model.save_changes();
    this.syncControls();
    this.draw();
  }
  onKey(e) {
    const m = this.model;
    const keys = {
      o: () => this.setTrait("mode", "overview"),
      h: () => this.setTrait("mode", "hover"),
      p: () => this.setTrait("mode", "paint"),
      e: () => this.setTrait("erase", !m.get("erase")),
      b: () => this.setTrait("box", !m.get("box")),
      c: () => this.clearMasks(),
      g: () => this.setTrait("show_grid", !m.get("show_grid")),
      r: () => this.reset(),
      "[": () => this.setTrait("brush", Math.max(2, m.get("brush") - 4)),
      "]": () => this.setTrait("brush", Math.min(120, m.get("brush") + 4))
    };
    const action = keys[e.key];
    if (!action || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    e.stopPropagation();
    action();
  }
  // ---- pointer -----------------------------------------------------------------------------------
  bindPointer(panel) {
    const other = panel === this.a ? this.b : this.a;
    onPointerMove(panel.mark, (e) => {
      if (!this.ready) return;
      const loc = panel.locate(e);
      const mode = this.model.get("mode");
      if (mode === "hover" && loc.inside) {
        const cur = this.model.get(`hover_${panel.side}`);
        this.hoverSide = panel.side;
        if (!cur || cur[0] !== loc.row || cur[1] !== loc.col || this.model.get(`hover_${other.side}`).length) {
          this.local = true;
          this.model.set(`hover_${panel.side}`, [loc.row, loc.col]);
          this.model.set(`hover_${other.side}`, []);
          this.local = false;
          this.saveSoon();
        }
        this.request(e.timeStamp);
      } else if (mode === "paint") {
        if (this.painting === panel && e.buttons & 1) {
          this.paintTo(panel, loc);
          this.onStroke(panel, false);
        }
        this.brushAt = { panel, x: loc.x, y: loc.y };
        this.request(e.timeStamp);
      }
    });
    panel.mark.addEventListener("pointerdown", (e) => {
      if (!this.ready || this.model.get("mode") !== "paint" || e.button !== 0) return;
      e.preventDefault();
      panel.mark.setPointerCapture?.(e.pointerId);
      this.painting = panel;
      panel.endStroke();
      const loc = panel.locate(e);
      this.boxStart = loc;
      this.paintTo(panel, loc);
      this.onStroke(panel, false);
      this.request(e.timeStamp);
    });
    const end = () => {
      if (this.painting !== panel) return;
      this.painting = null;
      panel.endStroke();
      this.syncMask(panel.side);
      this.onStroke(panel, true);
    };
    panel.mark.addEventListener("pointerup", end);
    panel.mark.addEventListener("pointercancel", end);
    panel.mark.addEventListener("pointerleave", () => {
      this.brushAt = null;
      end();
      this.request(performance.now());
    });
  }
  /** Continue the stroke on `panel` to `loc`: the brush, or (box) the rectangle from where the drag started,
   * which replaces the panel's mask. */
  paintTo(panel, loc) {
    const m = this.model;
    if (m.get("box")) {
      const start = this.boxStart;
      panel.setMask(boxMask(panel.H, panel.W, start.x, start.y, loc.x, loc.y));
    } else panel.strokeTo(loc.x, loc.y, m.get("brush"), m.get("erase"));
  }
  /** Send local trait changes to the kernel at most every 50 ms (the last state always goes). */
  saveSoon() {
    if (this.saveTimer) return;
    const wait = Math.max(0, 50 - (performance.now() - (this.lastSave || -1e9)));
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      this.lastSave = performance.now();
      this.model.save_changes();
    }, wait);
  }
  /** Draw now when the last draw is older than half a frame, else once on the next frame (latest wins). */
  request(eventTime) {
    if (this.pending !== null) {
      this.pendingTimes.push(eventTime);
      return;
    }
    if (performance.now() - this.lastDraw > 8) {
      this.draw([eventTime]);
      return;
    }
    this.pendingTimes = [eventTime];
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      this.draw(this.pendingTimes);
    });
  }
  // ---- drawing -----------------------------------------------------------------------------------
  currentMaps() {
    const m = this.model;
    const mode = m.get("mode");
    const views = { a: null, b: null, cell: null, match: null, info: "" };
    const score = m.get("score");
    if (mode === "overview") {
      views.a = this.mapA;
      views.b = this.mapB;
      views.info = "Overview: each image's map S = P summed over the other image.";
    } else if (mode === "hover") {
      for (const side of ["a", "b"]) {
        const cell = m.get(`hover_${side}`);
        if (!cell || cell.length !== 2) continue;
        const src = this[side];
        const dst = side === "a" ? this.b : this.a;
        const i = cell[0] * src.gw + cell[1];
        const values = this.contrib.point(side, i);
        const best = bestCell(values, dst.gw);
        views[dst.side] = values;
        views.cell = { side, rc: cell };
        views.match = { side: dst.side, rc: best.rc };
        const own = (side === "a" ? this.mapA : this.mapB)[i];
        views.info = `Cell (${cell[0]}, ${cell[1]}) of ${side.toUpperCase()} carries ${fmt(own)} (${pct(own, score)} of the score); best match on ${dst.side.toUpperCase()}: cell (${best.rc[0]}, ${best.rc[1]}), ${fmt(values[best.index], 5)}.`;
      }
      if (!views.cell) views.info = "Hover: move over either image; the other shows what that cell matches.";
    } else {
      const parts = [];
      for (const side of ["a", "b"]) {
        const src = this[side];
        const dst = side === "a" ? this.b : this.a;
        if (!(src.maskPixels > 0)) continue;
        views[dst.side] = this.contrib.weighted(side, src.weights);
        const region = regionScore(src.weights, side === "a" ? this.mapA : this.mapB);
        parts.push(`region on ${side.toUpperCase()}: score ${fmt(region)} (${pct(region, score)} of the total)`);
      }
      views.info = parts.length ? `Paint: ${parts.join("; ")}.` : "Paint: drag on either image to paint a region; the other shows where it is matched.";
    }
    return views;
  }
  draw(eventTimes = null) {
    if (!this.ready) return;
    const m = this.model;
    const views = this.currentMaps();
    const shared = m.get("scale_mode") === "shared";
    const vShared = this.sharedScale(views);
    const opacity = m.get("opacity");
    this.a.drawHeat(views.a, shared ? vShared : maxAbs(views.a), this.lut, opacity);
    this.b.drawHeat(views.b, shared ? vShared : maxAbs(views.b), this.lut, opacity);
    const paint = m.get("mode") === "paint";
    for (const panel of [this.a, this.b]) {
      const brushHere = paint && !m.get("box") && this.brushAt && this.brushAt.panel === panel;
      const brush = brushHere ? { x: this.brushAt.x, y: this.brushAt.y, r: m.get("brush"), erase: m.get("erase") } : null;
      panel.drawMarks({
        grid: m.get("show_grid"),
        cell: views.cell && views.cell.side === panel.side ? views.cell.rc : null,
        match: views.match && views.match.side === panel.side ? views.match.rc : null,
        showMask: paint,
        brush
      });
    }
    this.drawExtra(views, shared ? vShared : null);
    this.drawCaptions(views, shared ? vShared : null);
    this.lastDraw = performance.now();
    if (eventTimes && tracing()) {
      for (const t of eventTimes) this.trace.push({ event: t, drawn: this.lastDraw, batch: eventTimes.length });
      if (this.trace.length > 5e3) this.trace.splice(0, this.trace.length - 5e3);
    }
    this.root.dataset.draws = String(Number(this.root.dataset.draws || 0) + 1);
  }
  /** A brush edit on `panel` (`final`: the stroke ended or the mask was cleared). */
  onStroke() {
  }
  /** The one colour scale of every map on show (scale_mode "shared"). */
  sharedScale(views) {
    return maxAbs(views.a, views.b);
  }
  /** Draw views beyond the two panels; `vShared` is the shared scale, or null for per-view scales. */
  drawExtra() {
  }
  drawCaptions(views, vShared) {
    const m = this.model;
    for (const panel of [this.a, this.b]) {
      const values = views[panel.side];
      const scale = (vShared ?? maxAbs(values)).toExponential(2);
      setText(panel.caption, values ? `sum ${fmt(sum(values))}; scale ±${scale}` : "");
    }
    const v = vShared ?? maxAbs(views.a, views.b);
    this.colorbar.label(v);
    this.colorbar.root.title = vShared === null ? "per-view scales: see each caption" : "one scale for both views";
    const score = m.get("score");
    const g = m.get("global_term");
    const exact = m.get("exact") ? "exact" : "APPROXIMATE (linearisation)";
    const about = `${m.get("similarity")}, ${m.get("pooling")}, ${m.get("model_name")}, ${exact}`;
    setText(this.readoutScore, `score ${score.toFixed(4)} (${about})`);
    setText(
      this.readoutSums,
      `Σ map A = ${this.sumA.toFixed(4)}, Σ map B = ${this.sumB.toFixed(4)}` + (g ? `, global (bias) term ${fmt(g)}: maps + global term = score` : ": each map adds up to the score")
    );
    setText(this.readoutInfo, views.info);
  }
};
function bindPairModel(model, view) {
  view.syncControls();
  view.loadPair();
  const redraw = () => {
    if (view.local) return;
    view.syncControls();
    view.draw();
  };
  model.on("change:_pair_version", () => view.loadPair());
  model.on("change:lut", () => {
    view.loadLut();
    view.draw();
  });
  const traits = ["mode", "hover_a", "hover_b", "opacity", "scale_mode", "show_grid", "brush", "erase", "box", "cmap"];
  for (const name of traits) model.on(`change:${name}`, redraw);
  for (const side of ["a", "b"]) {
    model.on(`change:mask_${side}`, () => {
      if (view.painting === view[side]) return;
      view.loadMask(side);
      view.draw();
    });
  }
}

// simvis_widgets/widgets/js/pair_explorer.js
function render({ model, el: root }) {
  const view = new PairView(model, root);
  const hide = exposeView(root, view);
  bindPairModel(model, view);
  return hide;
}
var pair_explorer_default = { render };
export {
  Panel,
  cellWeights,
  decodeFloats,
  decodePayload,
  pair_explorer_default as default
};
