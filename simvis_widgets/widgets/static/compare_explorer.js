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
function regionScore(weights, map) {
  let s = 0;
  for (let k = 0; k < map.length; k++) s += weights[k] * map[k];
  return s;
}
function bestCell(values, gw) {
  const index = argmax(values);
  return { index, rc: [Math.floor(index / gw), index % gw] };
}

// simvis_widgets/widgets/js/compare_explorer.js
var MODES = ["overview", "hover", "paint", "difference"];
var CompareView = class {
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.rows = [];
    this.buildControls();
    this.body = el("div", { class: "sv-rows" });
    this.readout = el("div", { class: "sv-readout", "data-testid": "readout" });
    initRoot(root, "simvis-compare");
    root.append(this.toolbar, this.body, this.colorbar.root, this.readout);
    this.hover = null;
    this.painting = null;
  }
  buildControls() {
    this.modeButtons = {};
    const modes = el("div", { class: "sv-group" });
    for (const mode of MODES) {
      const name = mode[0].toUpperCase() + mode.slice(1);
      const b = el("button", { class: "sv-btn", "data-mode": mode, onclick: () => this.setTrait("mode", mode) }, name);
      this.modeButtons[mode] = b;
      modes.append(b);
    }
    this.slider = el("input", {
      type: "range",
      min: "0",
      max: "0",
      step: "1",
      "data-testid": "slider",
      title: "step through the sessions in order"
    });
    this.slider.addEventListener("input", () => this.setTrait("current", Number(this.slider.value)));
    this.sliderLabel = el("span", { class: "sv-slider-label" });
    this.allBox = el("input", { type: "checkbox", title: "show every row instead of the slider's one" });
    this.allBox.addEventListener("change", () => this.setTrait("show_all", this.allBox.checked));
    this.refSelect = el("select", { title: "reference row of the difference view", "data-testid": "reference" });
    this.refSelect.addEventListener("change", () => this.setTrait("reference", Number(this.refSelect.value)));
    this.brushInput = el("input", {
      type: "range",
      min: "2",
      max: "120",
      step: "1",
      title: "brush radius in image pixels"
    });
    this.brushInput.addEventListener("input", () => this.setTrait("brush", Number(this.brushInput.value)));
    const clear = el("button", { class: "sv-btn", onclick: () => this.clearMasks() }, "Clear");
    this.opacityInput = el("input", { type: "range", min: "0", max: "1", step: "0.05", title: "overlay opacity" });
    this.opacityInput.addEventListener("input", () => this.setTrait("opacity", Number(this.opacityInput.value)));
    this.toolbar = el(
      "div",
      { class: "sv-toolbar" },
      modes,
      el("div", { class: "sv-group" }, this.slider, this.sliderLabel, el("label", {}, this.allBox, " all rows")),
      el("div", { class: "sv-group" }, el("label", {}, "reference ", this.refSelect)),
      el(
        "div",
        { class: "sv-group" },
        el("label", {}, "brush ", this.brushInput),
        clear,
        el("label", {}, "opacity ", this.opacityInput)
      )
    );
    this.colorbar = new ColorBar();
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
    this.slider.max = String(Math.max(0, this.rows.length - 1));
    this.slider.value = String(m.get("current"));
    setText(this.sliderLabel, this.rows.length ? this.rows[m.get("current")]?.label ?? "" : "");
    this.allBox.checked = m.get("show_all");
    this.brushInput.value = String(m.get("brush"));
    this.opacityInput.value = String(m.get("opacity"));
    if (this.refSelect.options.length !== this.rows.length) {
      this.refSelect.innerHTML = "";
      this.rows.forEach((r, i) => this.refSelect.append(el("option", { value: String(i) }, r.label)));
    }
    this.refSelect.value = String(m.get("reference"));
    this.root.dataset.mode = m.get("mode") === "paint" ? "paint" : "hover";
    for (const [i, row] of this.rows.entries()) {
      const difference = m.get("mode") === "difference" && i === m.get("reference");
      const visible = m.get("show_all") || i === m.get("current") || difference;
      row.root.style.display = visible ? "" : "none";
      row.a.cachedRect = row.b.cachedRect = null;
    }
  }
  async load() {
    const m = this.model;
    const bitmaps = await Promise.all(m.get("images").map((d) => decodeImage(d)));
    this.lut = asBytes(m.get("lut"));
    this.body.innerHTML = "";
    this.rows = m.get("panels").map((p, i) => this.buildRow(p, i, bitmaps));
    this.colorbar.paint(this.lut);
    this.ready = true;
    this.root.dataset.ready = String(Number(this.root.dataset.ready || 0) + 1);
    this.syncControls();
    this.draw();
  }
  buildRow(p, index, bitmaps) {
    const [ha, wa] = p.grid_a;
    const [hb, wb] = p.grid_b;
    const { contrib, mapA, mapB } = decodePayload(p);
    const row = {
      label: p.label,
      score: p.score,
      contrib,
      mapA,
      mapB,
      a: new Panel("a", this),
      b: new Panel("b", this),
      caption: el("div", { class: "sv-row-caption", "data-testid": `row-caption-${index}` })
    };
    row.a.setImage(bitmaps[p.image_a], p.size_a[0], p.size_a[1], ha, wa);
    row.b.setImage(bitmaps[p.image_b], p.size_b[0], p.size_b[1], hb, wb);
    for (const side of ["a", "b"]) {
      const panel = row[side];
      panel.heat.setAttribute("data-testid", `heat-${index}-${side}`);
      panel.mark.setAttribute("data-testid", `mark-${index}-${side}`);
      this.bindPointer(row, panel);
    }
    const title = `${p.label}: score ${p.score.toFixed(4)}${p.exact ? "" : " (APPROXIMATE)"}`;
    row.root = el(
      "div",
      { class: "sv-row", "data-row": String(index) },
      el("div", { class: "sv-row-title" }, title),
      el("div", { class: "sv-panels" }, row.a.root, row.b.root),
      row.caption
    );
    this.body.append(row.root);
    return row;
  }
  // ---- pointer: one place, every row --------------------------------------------------------------
  bindPointer(row, panel) {
    onPointerMove(panel.mark, (e) => {
      if (!this.ready) return;
      const loc = panel.locate(e);
      const mode = this.model.get("mode");
      if ((mode === "hover" || mode === "difference") && loc.inside) {
        this.hover = { side: panel.side, fx: loc.x / panel.W, fy: loc.y / panel.H };
        this.draw();
      } else if (mode === "paint" && this.painting && e.buttons & 1) {
        this.strokeAll(panel.side, loc.x / panel.W, loc.y / panel.H, panel);
        this.draw();
      }
    });
    panel.mark.addEventListener("pointerdown", (e) => {
      if (!this.ready || this.model.get("mode") !== "paint" || e.button !== 0) return;
      e.preventDefault();
      panel.mark.setPointerCapture?.(e.pointerId);
      this.painting = panel.side;
      for (const r of this.rows) r[panel.side].endStroke();
      const loc = panel.locate(e);
      this.strokeAll(panel.side, loc.x / panel.W, loc.y / panel.H, panel);
      this.draw();
    });
    const end = () => {
      if (this.painting !== panel.side) return;
      this.painting = null;
      this.syncMask(panel.side);
    };
    panel.mark.addEventListener("pointerup", end);
    panel.mark.addEventListener("pointercancel", end);
  }
  /** The same stroke, in fractions of the image, on this side of every row (brush scaled to each image). */
  strokeAll(side, fx, fy, source) {
    const r = this.model.get("brush");
    for (const row of this.rows) {
      const p = row[side];
      p.strokeTo(fx * p.W, fy * p.H, r * p.W / source.W, false);
    }
  }
  clearMasks() {
    for (const row of this.rows) {
      row.a.setMask(null);
      row.b.setMask(null);
    }
    this.syncMask("a");
    this.syncMask("b");
    this.draw();
  }
  syncMask(side) {
    this.model.set(`mask_${side}`, this.rows[0][side].maskTrait());
    this.model.save_changes();
  }
  // ---- drawing -------------------------------------------------------------------------------------
  viewsOf(row, mode) {
    const v = { a: null, b: null, cell: null, info: "" };
    if (mode === "overview" || mode === "difference") {
      v.a = row.mapA;
      v.b = row.mapB;
    }
    if ((mode === "hover" || mode === "difference") && this.hover) {
      const src = row[this.hover.side];
      const dst = this.hover.side === "a" ? row.b : row.a;
      const rr = Math.min(src.gh - 1, Math.floor(this.hover.fy * src.gh));
      const cc = Math.min(src.gw - 1, Math.floor(this.hover.fx * src.gw));
      const values = row.contrib.point(this.hover.side, rr * src.gw + cc);
      v[dst.side] = values;
      v[src.side] = null;
      v.cell = { side: this.hover.side, rc: [rr, cc] };
      const best = bestCell(values, dst.gw);
      const own = (this.hover.side === "a" ? row.mapA : row.mapB)[rr * src.gw + cc];
      v.info = `cell (${rr}, ${cc}) carries ${fmt(own)} (${pct(own, row.score)}); best match (${best.rc[0]}, ${best.rc[1]})`;
    }
    if (mode === "paint") {
      const parts = [];
      for (const side of ["a", "b"]) {
        const src = row[side];
        const dst = side === "a" ? row.b : row.a;
        if (!(src.maskPixels > 0)) continue;
        v[dst.side] = row.contrib.weighted(side, src.weights);
        const region = regionScore(src.weights, side === "a" ? row.mapA : row.mapB);
        parts.push(`region on ${side.toUpperCase()}: ${fmt(region)} (${pct(region, row.score)})`);
      }
      v.info = parts.join("; ");
    }
    return v;
  }
  draw() {
    if (!this.ready) return;
    const m = this.model;
    const mode = m.get("mode");
    const views = this.rows.map((row) => this.viewsOf(row, mode));
    if (mode === "difference") {
      const ref = views[m.get("reference")];
      for (const [i, v] of views.entries()) {
        for (const side of ["a", "b"]) {
          if (!v[side] || !ref[side] || v[side].length !== ref[side].length) {
            v[side] = null;
            continue;
          }
          if (i === m.get("reference")) continue;
          const d = new Float32Array(v[side].length);
          for (let k = 0; k < d.length; k++) d[k] = v[side][k] - ref[side][k];
          v[side] = d;
        }
        if (i !== m.get("reference"))
          v.info = `minus ${this.rows[m.get("reference")].label}` + (v.info ? `; ${v.info}` : "");
      }
    }
    const vmax = maxAbs(...views.flatMap((v) => [v.a, v.b]));
    const opacity = m.get("opacity");
    for (const [i, row] of this.rows.entries()) {
      const v = views[i];
      row.a.drawHeat(v.a, vmax, this.lut, opacity);
      row.b.drawHeat(v.b, vmax, this.lut, opacity);
      for (const side of ["a", "b"]) {
        const cell = v.cell && v.cell.side === side ? v.cell.rc : null;
        row[side].drawMarks({ grid: false, cell, match: null, showMask: mode === "paint", brush: null });
      }
      setText(row.caption, v.info);
    }
    this.colorbar.label(vmax);
    const minus = mode === "difference" ? ` (each row minus "${this.rows[m.get("reference")].label}")` : "";
    setText(
      this.readout,
      `${this.rows.length} sessions on one colour scale ±${vmax.toExponential(2)}${minus}; hover or paint in any row and every row follows.`
    );
    this.root.dataset.draws = String(Number(this.root.dataset.draws || 0) + 1);
  }
};
function render({ model, el: root }) {
  const view = new CompareView(model, root);
  const hide = exposeView(root, view);
  view.load();
  model.on("change:_version", () => view.load());
  for (const name of ["mode", "current", "show_all", "reference", "brush", "opacity"]) {
    model.on(`change:${name}`, () => {
      view.syncControls();
      view.draw();
    });
  }
  return hide;
}
var compare_explorer_default = { render };
export {
  Panel,
  cellWeights,
  decodeFloats,
  decodePayload,
  compare_explorer_default as default
};
