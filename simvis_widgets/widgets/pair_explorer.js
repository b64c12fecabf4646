// PairExplorer front end: two linked image canvases; hover and paint maps are computed here, in the browser.
//
// The kernel sends, once per pair, the pairwise contribution matrix P (N_A x N_B, row-major, float32 or
// float16) -- or, for large grids, the projected shares Q_A (N_A x D), Q_B (N_B x D) and the scale, with
// P = scale * Q_A Q_B^T -- plus both maps, the score and the images. Everything interactive is done here:
//   hover cell i of A  -> row i of P over B        hover cell j of B -> column j of P over A
//   paint a mask on A  -> sum_i w_i P[i, :] over B  (w_i = fraction of cell i covered, exact area)
// The pure functions below are exported so a test can pin them to the Python Explanation (node, no DOM).

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

/** Index of the largest value. */
export function argmax(values) {
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

// ------------------------------------------------------------------------------------------------
// View
// ------------------------------------------------------------------------------------------------

const MODES = ["overview", "hover", "paint"];
const CMAPS = ["RdBu_r", "coolwarm", "bwr", "seismic", "PiYG", "PuOr_r", "viridis"];
const fmt = (v, digits = 4) => (v >= 0 ? "+" : "") + v.toFixed(digits);
const pct = (part, whole) => (whole ? `${((100 * part) / whole).toFixed(1)} %` : "n/a");

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

class Panel {
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
    this.mask = new Uint8Array(H * W);
    this.weights = new Float32Array(gh * gw);
  }

  /** Image pixel and cell under a pointer event. */
  locate(event) {
    const rect = this.mark.getBoundingClientRect();
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
    this.heat.style.opacity = String(opacity);
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
      const overlay = new ImageData(W, H);
      for (let k = 0; k < W * H; k++) {
        if (this.mask[k]) { overlay.data[4 * k] = 40; overlay.data[4 * k + 1] = 230; overlay.data[4 * k + 2] = 90; overlay.data[4 * k + 3] = 110; }
      }
      const tmp = document.createElement("canvas");
      tmp.width = W; tmp.height = H;
      tmp.getContext("2d").putImageData(overlay, 0, 0);
      ctx.drawImage(tmp, 0, 0);
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

  setMask(pixels) {
    this.mask = pixels || new Uint8Array(this.W * this.H);
    this.weights = cellWeights(this.mask, this.H, this.W, this.gh, this.gw);
    this.maskPixels = 0;
    for (let k = 0; k < this.mask.length; k++) this.maskPixels += this.mask[k] / 255;
  }
}

class PairView {
  constructor(model, root) {
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
    root.classList.add("simvis-pair");
    root.setAttribute("tabindex", "0");
    root.setAttribute("data-lm-suppress-shortcuts", "true");
    root.setAttribute("data-p-suppress-shortcuts", "true");
    root.append(this.toolbar, el("div", { class: "sv-panels" }, this.a.root, this.b.root), this.colorbar, this.readout);
    root.addEventListener("keydown", (e) => this.onKey(e));
    for (const panel of [this.a, this.b]) this.bindPointer(panel);
    root.__simvis = this; // for tests and benchmarks
  }

  // ---- data --------------------------------------------------------------------------------------

  async loadPair() {
    const m = this.model;
    const [ha, wa] = m.get("grid_a"), [hb, wb] = m.get("grid_b");
    const nA = ha * wa, nB = hb * wb;
    const dtype = m.get("matrix_dtype");
    if (m.get("matrix_kind") === "pairwise") {
      const P = decodeFloats(m.get("pairwise"), dtype);
      const s = m.get("matrix_scale");
      if (s !== 1) for (let k = 0; k < P.length; k++) P[k] *= s;
      this.contrib = new Contributions({ nA, nB, pairwise: P });
    } else {
      this.contrib = new Contributions({
        nA, nB, dim: m.get("factor_dim"), scale: m.get("scale"),
        sharesA: decodeFloats(m.get("shares_a"), dtype), sharesB: decodeFloats(m.get("shares_b"), dtype),
      });
    }
    this.mapA = decodeFloats(m.get("map_a"), "float32");
    this.mapB = decodeFloats(m.get("map_b"), "float32");
    const [bitmapA, bitmapB] = await Promise.all([this.decodeImage("image_a"), this.decodeImage("image_b")]);
    const [Ha, Wa] = m.get("size_a"), [Hb, Wb] = m.get("size_b");
    this.a.setImage(bitmapA, Ha, Wa, ha, wa);
    this.b.setImage(bitmapB, Hb, Wb, hb, wb);
    this.loadMask("a");
    this.loadMask("b");
    this.loadLut();
    this.ready = true;
    this.root.dataset.ready = String(Number(this.root.dataset.ready || 0) + 1);
    this.draw();
  }

  async decodeImage(name) {
    const data = this.model.get(name);
    const bytes = data instanceof DataView ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
    return await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  }

  loadLut() {
    const data = this.model.get("lut");
    this.lut = data instanceof DataView ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
    this.drawColorbar();
  }

  loadMask(side) {
    const panel = this[side];
    const value = this.model.get(`mask_${side}`);
    if (!value || !value.data) { panel.setMask(null); return; }
    const [H, W] = value.shape;
    const d = value.data;
    const bytes = d instanceof DataView ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : new Uint8Array(d);
    panel.setMask(H === panel.H && W === panel.W ? new Uint8Array(bytes) : null);
  }

  syncMask(side) {
    const panel = this[side];
    const value = panel.maskPixels > 0 ? { shape: [panel.H, panel.W], data: new DataView(panel.mask.slice().buffer) } : null;
    this.model.set(`mask_${side}`, value);
    this.model.save_changes();
  }

  // ---- controls ----------------------------------------------------------------------------------

  buildControls() {
    const m = this.model;
    this.modeButtons = {};
    const modes = el("div", { class: "sv-group", role: "group" });
    for (const mode of MODES) {
      const key = mode[0].toUpperCase();
      const b = el("button", { class: "sv-btn", "data-mode": mode, title: `${mode} mode (key ${mode[0]})`, onclick: () => this.setTrait("mode", mode) }, `${key}${mode.slice(1)}`);
      this.modeButtons[mode] = b;
      modes.append(b);
    }
    this.brushInput = el("input", { type: "range", min: "2", max: "120", step: "1", title: "brush radius in image pixels ([ and ])", "data-testid": "brush" });
    this.brushInput.addEventListener("input", () => this.setTrait("brush", Number(this.brushInput.value)));
    this.eraseBox = el("input", { type: "checkbox", title: "erase (key e)" });
    this.eraseBox.addEventListener("change", () => this.setTrait("erase", this.eraseBox.checked));
    const clear = el("button", { class: "sv-btn", title: "clear both masks (key c)", onclick: () => this.clearMasks() }, "Clear");
    this.paintGroup = el("div", { class: "sv-group" }, el("label", {}, "brush ", this.brushInput), el("label", {}, this.eraseBox, " erase"), clear);
    this.cmapSelect = el("select", { title: "colormap", "data-testid": "cmap" });
    const cmaps = new Set([...CMAPS, m.get("cmap")]);
    for (const c of cmaps) this.cmapSelect.append(el("option", { value: c }, c));
    this.cmapSelect.addEventListener("change", () => this.setTrait("cmap", this.cmapSelect.value));
    this.opacityInput = el("input", { type: "range", min: "0", max: "1", step: "0.05", title: "overlay opacity" });
    this.opacityInput.addEventListener("input", () => this.setTrait("opacity", Number(this.opacityInput.value)));
    this.scaleSelect = el("select", { title: "colour scale" }, el("option", { value: "shared" }, "shared scale"), el("option", { value: "per-view" }, "per-view scale"));
    this.scaleSelect.addEventListener("change", () => this.setTrait("scale_mode", this.scaleSelect.value));
    this.gridBox = el("input", { type: "checkbox", title: "show the feature cells (key g)" });
    this.gridBox.addEventListener("change", () => this.setTrait("show_grid", this.gridBox.checked));
    const swap = el("button", { class: "sv-btn", title: "swap A and B", onclick: () => this.model.send({ event: "swap" }) }, "Swap");
    const reset = el("button", { class: "sv-btn", title: "back to the overview, masks cleared (key r)", onclick: () => this.reset() }, "Reset");
    if (this.isStatic) swap.disabled = true;
    this.toolbar = el("div", { class: "sv-toolbar" }, modes, this.paintGroup,
      el("div", { class: "sv-group" }, this.cmapSelect, el("label", {}, "opacity ", this.opacityInput), this.scaleSelect, el("label", {}, this.gridBox, " grid")),
      el("div", { class: "sv-group" }, swap, reset));
    this.colorbarCanvas = el("canvas", { class: "sv-colorbar-canvas", width: "256", height: "12" });
    this.colorbarLabels = el("div", { class: "sv-colorbar-labels" });
    this.colorbar = el("div", { class: "sv-colorbar" }, this.colorbarCanvas, this.colorbarLabels);
    this.readout = el("div", { class: "sv-readout", "data-testid": "readout" });
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
    this.paintGroup.style.display = m.get("mode") === "paint" ? "" : "none";
    this.brushInput.value = String(m.get("brush"));
    this.eraseBox.checked = m.get("erase");
    this.cmapSelect.value = m.get("cmap");
    this.opacityInput.value = String(m.get("opacity"));
    this.scaleSelect.value = m.get("scale_mode");
    this.gridBox.checked = m.get("show_grid");
    this.root.dataset.mode = m.get("mode");
  }

  clearMasks() {
    for (const side of ["a", "b"]) { this[side].setMask(null); this.syncMask(side); }
    this.draw();
  }

  reset() {
    this.a.setMask(null); this.b.setMask(null);
    this.model.set("mask_a", null); this.model.set("mask_b", null);
    this.model.set("hover_a", []); this.model.set("hover_b", []);
    this.model.set("mode", "overview");
    this.model.save_changes();
    this.syncControls();
    this.draw();
  }

  onKey(e) {
    const keys = { o: () => this.setTrait("mode", "overview"), h: () => this.setTrait("mode", "hover"), p: () => this.setTrait("mode", "paint"),
      e: () => this.setTrait("erase", !this.model.get("erase")), c: () => this.clearMasks(), g: () => this.setTrait("show_grid", !this.model.get("show_grid")),
      r: () => this.reset(), "[": () => this.setTrait("brush", Math.max(2, this.model.get("brush") - 4)), "]": () => this.setTrait("brush", Math.min(120, this.model.get("brush") + 4)) };
    const action = keys[e.key];
    if (!action || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    e.stopPropagation();
    action();
  }

  // ---- pointer -----------------------------------------------------------------------------------

  bindPointer(panel) {
    const other = panel === this.a ? this.b : this.a;
    panel.mark.addEventListener("pointermove", (e) => {
      if (!this.ready) return;
      const loc = panel.locate(e);
      const mode = this.model.get("mode");
      if (mode === "hover" && loc.inside) {
        const cur = this.model.get(`hover_${panel.side}`);
        this.hoverSide = panel.side;
        if (!cur || cur[0] !== loc.row || cur[1] !== loc.col || this.model.get(`hover_${other.side}`).length) {
          this.model.set(`hover_${panel.side}`, [loc.row, loc.col]);
          this.model.set(`hover_${other.side}`, []);
          this.model.save_changes();
        }
        this.request(e.timeStamp);
      } else if (mode === "paint") {
        if (this.painting === panel && (e.buttons & 1)) panel.strokeTo(loc.x, loc.y, this.model.get("brush"), this.model.get("erase"));
        this.brushAt = { panel, x: loc.x, y: loc.y };
        this.request(e.timeStamp);
      }
    });
    panel.mark.addEventListener("pointerdown", (e) => {
      if (!this.ready || this.model.get("mode") !== "paint" || e.button !== 0) return;
      e.preventDefault();
      panel.mark.setPointerCapture?.(e.pointerId);
      this.painting = panel;
      panel.lastPoint = null;
      const loc = panel.locate(e);
      panel.strokeTo(loc.x, loc.y, this.model.get("brush"), this.model.get("erase"));
      this.request(e.timeStamp);
    });
    const end = () => {
      if (this.painting !== panel) return;
      this.painting = null;
      panel.lastPoint = null;
      this.syncMask(panel.side);
    };
    panel.mark.addEventListener("pointerup", end);
    panel.mark.addEventListener("pointercancel", end);
    panel.mark.addEventListener("pointerleave", () => { this.brushAt = null; end(); this.request(performance.now()); });
  }

  /** Draw now when the last draw is older than half a frame, else once on the next frame (latest wins). */
  request(eventTime) {
    if (this.pending !== null) { this.pendingTimes.push(eventTime); return; }
    if (performance.now() - this.lastDraw > 8) { this.draw([eventTime]); return; }
    this.pendingTimes = [eventTime];
    this.pending = requestAnimationFrame(() => { this.pending = null; this.draw(this.pendingTimes); });
  }

  // ---- drawing -----------------------------------------------------------------------------------

  currentMaps() {
    const m = this.model;
    const mode = m.get("mode");
    const views = { a: null, b: null, cell: null, match: null, info: "" };
    const score = m.get("score");
    if (mode === "overview") {
      views.a = this.mapA; views.b = this.mapB;
      views.info = "Overview: each image's map S = P summed over the other image.";
    } else if (mode === "hover") {
      for (const side of ["a", "b"]) {
        const cell = m.get(`hover_${side}`);
        if (!cell || cell.length !== 2) continue;
        const src = this[side], dst = side === "a" ? this.b : this.a;
        const i = cell[0] * src.gw + cell[1];
        const values = this.contrib.point(side, i);
        const best = argmax(values);
        views[dst.side] = values;
        views.cell = { side, rc: cell };
        views.match = { side: dst.side, rc: [Math.floor(best / dst.gw), best % dst.gw] };
        const own = (side === "a" ? this.mapA : this.mapB)[i];
        views.info = `Cell (${cell[0]}, ${cell[1]}) of ${side.toUpperCase()} carries ${fmt(own)} (${pct(own, score)} of the score); ` +
          `best match on ${dst.side.toUpperCase()}: cell (${views.match.rc[0]}, ${views.match.rc[1]}), ${fmt(values[best], 5)}.`;
      }
      if (!views.cell) views.info = "Hover: move over either image; the other shows what that cell matches.";
    } else {
      const parts = [];
      for (const side of ["a", "b"]) {
        const src = this[side], dst = side === "a" ? this.b : this.a;
        if (!(src.maskPixels > 0)) continue;
        views[dst.side] = this.contrib.weighted(side, src.weights);
        const own = side === "a" ? this.mapA : this.mapB;
        let region = 0;
        for (let k = 0; k < own.length; k++) region += src.weights[k] * own[k];
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
    const vShared = maxAbs(views.a, views.b);
    const opacity = m.get("opacity");
    this.a.drawHeat(views.a, shared ? vShared : maxAbs(views.a), this.lut, opacity);
    this.b.drawHeat(views.b, shared ? vShared : maxAbs(views.b), this.lut, opacity);
    const paint = m.get("mode") === "paint";
    for (const panel of [this.a, this.b]) {
      const brush = paint && this.brushAt && this.brushAt.panel === panel ? { x: this.brushAt.x, y: this.brushAt.y, r: m.get("brush"), erase: m.get("erase") } : null;
      panel.drawMarks({
        grid: m.get("show_grid"),
        cell: views.cell && views.cell.side === panel.side ? views.cell.rc : null,
        match: views.match && views.match.side === panel.side ? views.match.rc : null,
        showMask: paint, brush,
      });
    }
    this.drawCaptions(views, shared ? vShared : null);
    this.lastDraw = performance.now();
    if (eventTimes && window.__SIMVIS_TRACE__) {
      for (const t of eventTimes) this.trace.push({ event: t, drawn: this.lastDraw, batch: eventTimes.length });
      if (this.trace.length > 5000) this.trace.splice(0, this.trace.length - 5000);
    }
    this.root.dataset.draws = String(Number(this.root.dataset.draws || 0) + 1);
  }

  drawCaptions(views, vShared) {
    const m = this.model;
    for (const panel of [this.a, this.b]) {
      const values = views[panel.side];
      panel.caption.textContent = values
        ? `sum ${fmt(sum(values))}; scale ±${(vShared ?? maxAbs(values)).toExponential(2)}`
        : "";
    }
    const v = vShared ?? maxAbs(views.a, views.b);
    this.colorbarLabels.innerHTML = "";
    for (const t of [-v, 0, v]) this.colorbarLabels.append(el("span", {}, t === 0 ? "0" : t.toExponential(2)));
    this.colorbar.title = vShared === null ? "per-view scales: see each caption" : "one scale for both views";
    const score = m.get("score"), g = m.get("global_term");
    const sums = `Σ map A = ${sum(this.mapA).toFixed(4)}, Σ map B = ${sum(this.mapB).toFixed(4)}` +
      (g ? `, global (bias) term ${fmt(g)}` : "") + (g ? ": maps + global term = score" : ": each map adds up to the score");
    const exact = m.get("exact") ? "exact" : "APPROXIMATE (linearisation)";
    this.readout.innerHTML = "";
    this.readout.append(
      el("div", { class: "sv-score" }, `score ${score.toFixed(4)} (${m.get("similarity")}, ${m.get("pooling")}, ${m.get("model_name")}, ${exact})`),
      el("div", {}, sums),
      el("div", { "data-testid": "info" }, views.info),
      el("div", { class: "sv-hint" }, "red adds to the similarity, blue subtracts · keys: o h p (modes), e erase, c clear, [ ] brush, g grid, r reset"),
    );
  }

  drawColorbar() {
    const ctx = this.colorbarCanvas.getContext("2d");
    const img = new ImageData(256, 12);
    for (let x = 0; x < 256; x++) for (let y = 0; y < 12; y++) {
      const k = 4 * (y * 256 + x);
      img.data[k] = this.lut[3 * x]; img.data[k + 1] = this.lut[3 * x + 1]; img.data[k + 2] = this.lut[3 * x + 2]; img.data[k + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
}

function render({ model, el: root }) {
  const view = new PairView(model, root);
  view.syncControls();
  view.loadPair();
  const redraw = () => { view.syncControls(); view.draw(); };
  model.on("change:_pair_version", () => view.loadPair());
  model.on("change:lut", () => { view.loadLut(); view.draw(); });
  for (const name of ["mode", "hover_a", "hover_b", "opacity", "scale_mode", "show_grid", "brush", "erase", "cmap"]) model.on(`change:${name}`, redraw);
  model.on("change:mask_a", () => { if (view.painting !== view.a) { view.loadMask("a"); view.draw(); } });
  model.on("change:mask_b", () => { if (view.painting !== view.b) { view.loadMask("b"); view.draw(); } });
  return () => { root.__simvis = null; };
}

export default { render };
