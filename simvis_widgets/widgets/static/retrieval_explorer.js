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
  if (typeof window !== "undefined" && "onpointerrawupdate" in window)
    target.addEventListener("pointerrawupdate", once);
  target.addEventListener("pointermove", once);
}
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

// simvis_widgets/widgets/js/lib/region_sender.js
var RegionSender = class {
  constructor(model, weightsNow, { trait = "query_region", everyMs = 50, inFlightWaitMs = 1e3 } = {}) {
    this.model = model;
    this.weightsNow = weightsNow;
    this.trait = trait;
    this.everyMs = everyMs;
    this.inFlightWaitMs = inFlightWaitMs;
    this.lastSend = -1e9;
    this.sendTimer = null;
    this.pendingTimer = null;
    this.pendingSend = false;
    this.requestId = 0;
    this.answeredId = 0;
    this.sentAt = /* @__PURE__ */ new Map();
  }
  /** Send now if the last send is `everyMs` old (or `force`), else once when it is; while a request is unanswered
   * (for less than `inFlightWaitMs`) the newest region waits for its answer. */
  send(force = false) {
    const now = performance.now();
    if (this.requestId !== this.answeredId && now - this.lastSend < this.inFlightWaitMs) {
      this.pendingSend = true;
      if (!this.pendingTimer) {
        this.pendingTimer = setTimeout(
          () => {
            this.pendingTimer = null;
            this.answeredId = this.requestId;
            this.flush();
          },
          this.inFlightWaitMs - (now - this.lastSend)
        );
      }
      return;
    }
    this.pendingSend = false;
    if (!force && now - this.lastSend < this.everyMs) {
      if (!this.sendTimer) {
        this.sendTimer = setTimeout(
          () => {
            this.sendTimer = null;
            this.send(true);
          },
          this.everyMs - (now - this.lastSend)
        );
      }
      return;
    }
    clearTimeout(this.sendTimer);
    this.sendTimer = null;
    this.lastSend = now;
    const w = this.weightsNow();
    this.requestId += 1;
    this.sentAt.set(this.requestId, now);
    if (this.sentAt.size > 1e3) this.sentAt.delete(this.sentAt.keys().next().value);
    const region = w ? { kind: "cells", weights: Array.from(w), id: this.requestId } : { kind: "whole", id: this.requestId };
    this.model.set(this.trait, region);
    this.model.save_changes();
  }
  /** Results for request `id` arrived: a region that waited goes now. */
  answered(id) {
    this.answeredId = Math.max(this.answeredId, id);
    clearTimeout(this.pendingTimer);
    this.pendingTimer = null;
    this.flush();
  }
  flush() {
    if (this.pendingSend) this.send(true);
  }
};

// simvis_widgets/widgets/js/retrieval_explorer.js
var TOOLS = ["paint", "box", "hover"];
var RetrievalView = class {
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.query = new Panel("q", this);
    this.query.root.querySelector(".sv-label").textContent = "query";
    this.strip = el("div", { class: "sv-strip", "data-testid": "strip" });
    this.status = el("div", { class: "sv-status", "data-testid": "status" });
    this.buildControls();
    initRoot(root, "simvis-retrieval");
    root.append(this.toolbar, el("div", { class: "sv-query" }, this.query.root), this.status, this.strip);
    this.bindPointer();
    this.sender = new RegionSender(model, () => this.currentWeights());
    this.box = null;
    this.hoverCell = null;
    this.thumbs = /* @__PURE__ */ new Map();
  }
  buildControls() {
    const m = this.model;
    this.toolButtons = {};
    const tools = el("div", { class: "sv-group" });
    for (const tool of TOOLS) {
      const name = tool[0].toUpperCase() + tool.slice(1);
      const b = el("button", { class: "sv-btn", "data-tool": tool, onclick: () => this.setTool(tool) }, name);
      this.toolButtons[tool] = b;
      tools.append(b);
    }
    this.regionSelect = el(
      "select",
      { title: "search with the whole query image or with the selected region", "data-testid": "region-mode" },
      el("option", { value: "region" }, "region"),
      el("option", { value: "whole" }, "whole image")
    );
    this.regionSelect.addEventListener("change", () => {
      m.set("region_mode", this.regionSelect.value);
      m.save_changes();
      this.sender.send(true);
      this.drawQuery();
    });
    this.kInput = el("input", {
      type: "number",
      min: "1",
      max: "50",
      step: "1",
      title: "number of results",
      style: "width: 4em"
    });
    this.kInput.addEventListener("change", () => {
      m.set("k", Math.max(1, Number(this.kInput.value) || 1));
      m.save_changes();
    });
    this.selfBox = el("input", { type: "checkbox", title: "leave the query itself out of the results" });
    this.selfBox.addEventListener("change", () => {
      m.set("exclude_self", this.selfBox.checked);
      m.save_changes();
    });
    this.brushInput = el("input", {
      type: "range",
      min: "2",
      max: "120",
      step: "1",
      title: "brush radius in image pixels"
    });
    this.brushInput.addEventListener("input", () => {
      m.set("brush", Number(this.brushInput.value));
      m.save_changes();
    });
    const clear = el("button", { class: "sv-btn", onclick: () => this.clearRegion() }, "Clear");
    const search = el(
      "div",
      { class: "sv-group" },
      this.regionSelect,
      el("label", {}, "k ", this.kInput),
      el("label", {}, this.selfBox, " exclude the query")
    );
    this.toolbar = el("div", { class: "sv-toolbar" }, tools, el("label", {}, "brush ", this.brushInput), clear, search);
  }
  syncControls() {
    const m = this.model;
    for (const [tool, b] of Object.entries(this.toolButtons)) b.classList.toggle("sv-active", m.get("tool") === tool);
    this.regionSelect.value = m.get("region_mode");
    this.kInput.value = String(m.get("k"));
    this.selfBox.checked = m.get("exclude_self");
    this.brushInput.value = String(m.get("brush"));
    this.root.dataset.mode = m.get("tool") === "paint" ? "paint" : "hover";
  }
  setTool(tool) {
    this.model.set("tool", tool);
    this.model.save_changes();
    this.syncControls();
    this.drawQuery();
  }
  async loadQuery() {
    const m = this.model;
    const bitmap = await decodeImage(m.get("query_image"));
    const [H, W] = m.get("query_size");
    const [gh, gw] = m.get("query_grid");
    this.query.setImage(bitmap, H, W, gh, gw);
    this.query.setMask(null);
    this.box = null;
    this.hoverCell = null;
    this.ready = true;
    this.drawQuery();
    this.renderResults();
  }
  // ---- region -> kernel ----------------------------------------------------------------------------
  currentWeights() {
    const m = this.model;
    if (m.get("region_mode") === "whole") return null;
    const q = this.query;
    if (m.get("tool") === "hover") {
      if (!this.hoverCell) return null;
      const w = new Float32Array(q.gh * q.gw);
      w[this.hoverCell[0] * q.gw + this.hoverCell[1]] = 1;
      return w;
    }
    return q.maskPixels > 0 ? q.weights : null;
  }
  clearRegion() {
    this.query.setMask(null);
    this.box = null;
    this.hoverCell = null;
    this.sender.send(true);
    this.syncMask();
    this.drawQuery();
  }
  syncMask() {
    this.model.set("query_mask", this.query.maskTrait());
    this.model.save_changes();
  }
  bindPointer() {
    const q = this.query;
    q.mark.addEventListener("pointerdown", (e) => {
      if (!this.ready || e.button !== 0) return;
      const tool = this.model.get("tool");
      if (tool === "hover") return;
      e.preventDefault();
      q.mark.setPointerCapture?.(e.pointerId);
      const loc = q.locate(e);
      this.dragging = true;
      if (tool === "paint") {
        q.endStroke();
        q.strokeTo(loc.x, loc.y, this.model.get("brush"), false);
      } else this.box = { x0: loc.x, y0: loc.y, x1: loc.x, y1: loc.y };
      this.afterEdit();
    });
    onPointerMove(q.mark, (e) => {
      if (!this.ready) return;
      const loc = q.locate(e);
      const tool = this.model.get("tool");
      this.cursor = loc;
      if (tool === "hover" && loc.inside) {
        if (!this.hoverCell || this.hoverCell[0] !== loc.row || this.hoverCell[1] !== loc.col) {
          this.hoverCell = [loc.row, loc.col];
          this.afterEdit();
        }
        return;
      }
      if (this.dragging && e.buttons & 1) {
        if (tool === "paint") q.strokeTo(loc.x, loc.y, this.model.get("brush"), false);
        else if (this.box) {
          this.box.x1 = loc.x;
          this.box.y1 = loc.y;
          q.setMask(boxMask(q.H, q.W, this.box.x0, this.box.y0, this.box.x1, this.box.y1));
        }
        this.afterEdit();
      } else this.drawQuery();
    });
    const end = () => {
      if (!this.dragging) return;
      this.dragging = false;
      q.endStroke();
      this.sender.send(true);
      this.syncMask();
    };
    q.mark.addEventListener("pointerup", end);
    q.mark.addEventListener("pointercancel", end);
    q.mark.addEventListener("pointerleave", () => {
      this.cursor = null;
      end();
      this.drawQuery();
    });
  }
  afterEdit() {
    if (this.model.get("region_mode") === "whole") {
      this.model.set("region_mode", "region");
      this.model.save_changes();
      this.syncControls();
    }
    this.drawQuery();
    this.sender.send();
  }
  drawQuery() {
    if (!this.ready) return;
    const q = this.query;
    const m = this.model;
    const tool = m.get("tool");
    const whole = m.get("region_mode") === "whole";
    const brushShown = tool === "paint" && this.cursor && this.cursor.inside;
    q.drawHeat(null, 1, null, 0);
    q.drawMarks({
      grid: tool === "hover",
      cell: tool === "hover" && this.hoverCell && !whole ? this.hoverCell : null,
      match: null,
      showMask: !whole && tool !== "hover",
      brush: brushShown ? { x: this.cursor.x, y: this.cursor.y, r: m.get("brush"), erase: false } : null
    });
  }
  // ---- kernel -> results -------------------------------------------------------------------------------
  renderResults() {
    const m = this.model;
    const results = m.get("results") || [];
    const lut = asBytes(m.get("lut"));
    const vmax = Math.max(1e-30, m.get("strip_vmax"));
    const best = Math.max(1e-30, ...results.map((r) => Math.abs(r.score)));
    this.strip.innerHTML = "";
    for (const r of results) {
      const [H, W] = r.size;
      const [gh, gw] = r.grid;
      const labelled = r.label !== null && r.label !== void 0;
      const card = el("div", {
        class: "sv-card",
        "data-index": String(r.index),
        title: `${r.source}${labelled ? " (" + r.label + ")" : ""}`
      });
      const stack = el("div", { class: "sv-stack" });
      stack.style.aspectRatio = `${W} / ${H}`;
      const img = el("canvas", { class: "sv-layer", width: String(W), height: String(H) });
      const heat = el("canvas", {
        class: "sv-layer sv-heat",
        width: String(W),
        height: String(H),
        "data-testid": `result-heat-${r.rank}`
      });
      heat.style.opacity = String(m.get("opacity"));
      stack.append(img, heat);
      this.drawThumb(img, r);
      const small = document.createElement("canvas");
      small.width = gw;
      small.height = gh;
      drawCellMap(heat.getContext("2d"), small, decodeFloats(r.map, "float32"), vmax, lut);
      const bar = el("div", { class: "sv-bar" });
      bar.style.width = `${Math.max(0, 100 * r.score / best).toFixed(1)}%`;
      card.append(
        stack,
        el("div", { class: "sv-card-text" }, `#${r.rank + 1}  ${r.score.toFixed(4)}`),
        el("div", { class: "sv-bar-track" }, bar),
        el("div", { class: "sv-card-label" }, labelled ? String(r.label) : String(r.source))
      );
      card.addEventListener("click", () => this.model.send({ event: "select", index: r.index }));
      this.strip.append(card);
    }
    const region = m.get("query_region");
    const what = !region || region.kind === "whole" ? "whole query image" : "selected region";
    this.status.textContent = results.length ? `top ${results.length} of ${m.get("gallery_size")} by the exact region score of the ${what} (maps on one scale ±${vmax.toExponential(2)}); click a result to explain the pair` : "no results";
    const version = m.get("results_version");
    this.root.dataset.results = String(version);
    const answered = m.get("results_for");
    this.sender.answered(answered);
    const sentAt = this.sender.sentAt;
    if (tracing() && sentAt.has(answered)) {
      const shown = performance.now();
      (this.trace = this.trace || []).push({ sent: sentAt.get(answered), shown, version, id: answered });
    }
  }
  drawThumb(canvas, r) {
    const ctx = canvas.getContext("2d");
    const cached = this.thumbs.get(r.index);
    if (cached) {
      ctx.drawImage(cached, 0, 0, canvas.width, canvas.height);
      return;
    }
    if (!r.thumb || !r.thumb.byteLength) return;
    decodeImage(r.thumb, "image/jpeg").then((bitmap) => {
      this.thumbs.set(r.index, bitmap);
      ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    });
  }
};
function render({ model, el: root }) {
  const view = new RetrievalView(model, root);
  const hide = exposeView(root, view);
  view.syncControls();
  view.loadQuery();
  model.on("change:query_version", () => view.loadQuery());
  model.on("change:results_version", () => view.renderResults());
  for (const name of ["tool", "k", "exclude_self", "region_mode", "brush"]) {
    model.on(`change:${name}`, () => {
      view.syncControls();
      view.drawQuery();
    });
  }
  return hide;
}
var retrieval_explorer_default = { render };
export {
  Panel,
  cellWeights,
  decodeFloats,
  retrieval_explorer_default as default
};
