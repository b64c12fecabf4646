// RetrievalExplorer front end: a query image with brush / box / hover tools, and a strip of the top-k gallery
// results with their region heatmaps. The region's cell weights are computed here (exact covered area) and
// sent to the kernel, throttled, one request in flight (lib/region_sender.js); the kernel scores the whole
// gallery with one matrix multiply and sends back the top-k.
import "./widget.css";
import "./retrieval_explorer.css";
import { asBytes, decodeFloats, decodeImage } from "./lib/bytes.js";
import { drawCellMap } from "./lib/colour.js";
import { exposeView, tracing } from "./lib/hooks.js";
import { boxMask } from "./lib/masks.js";
import { Panel, el, initRoot, onPointerMove } from "./lib/panel.js";
import { RegionSender } from "./lib/region_sender.js";

// The shared code this bundle runs, exported so the node tests drive the built file (tests/test_js_maths.py).
export { cellWeights } from "./lib/masks.js";
export { Panel, decodeFloats };

const TOOLS = ["paint", "box", "hover"];

class RetrievalView {
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
    // the region goes to `query_region`; the results name the request they answer (`results_for`)
    this.sender = new RegionSender(model, () => this.currentWeights());
    this.box = null;
    this.hoverCell = null;
    this.thumbs = new Map();
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
      el("option", { value: "whole" }, "whole image"),
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
      style: "width: 4em",
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
      title: "brush radius in image pixels",
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
      el("label", {}, this.selfBox, " exclude the query"),
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
      brush: brushShown ? { x: this.cursor.x, y: this.cursor.y, r: m.get("brush"), erase: false } : null,
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
      const labelled = r.label !== null && r.label !== undefined;
      const card = el("div", {
        class: "sv-card",
        "data-index": String(r.index),
        title: `${r.source}${labelled ? " (" + r.label + ")" : ""}`,
      });
      const stack = el("div", { class: "sv-stack" });
      stack.style.aspectRatio = `${W} / ${H}`;
      const img = el("canvas", { class: "sv-layer", width: String(W), height: String(H) });
      const heat = el("canvas", {
        class: "sv-layer sv-heat",
        width: String(W),
        height: String(H),
        "data-testid": `result-heat-${r.rank}`,
      });
      heat.style.opacity = String(m.get("opacity"));
      stack.append(img, heat);
      this.drawThumb(img, r);
      const small = document.createElement("canvas");
      small.width = gw;
      small.height = gh;
      drawCellMap(heat.getContext("2d"), small, decodeFloats(r.map, "float32"), vmax, lut);
      const bar = el("div", { class: "sv-bar" });
      bar.style.width = `${Math.max(0, (100 * r.score) / best).toFixed(1)}%`;
      card.append(
        stack,
        el("div", { class: "sv-card-text" }, `#${r.rank + 1}  ${r.score.toFixed(4)}`),
        el("div", { class: "sv-bar-track" }, bar),
        el("div", { class: "sv-card-label" }, labelled ? String(r.label) : String(r.source)),
      );
      card.addEventListener("click", () => this.model.send({ event: "select", index: r.index }));
      this.strip.append(card);
    }
    const region = m.get("query_region");
    const what = !region || region.kind === "whole" ? "whole query image" : "selected region";
    this.status.textContent = results.length
      ? `top ${results.length} of ${m.get("gallery_size")} by the exact region score of the ${what} ` +
        `(maps on one scale ±${vmax.toExponential(2)}); click a result to explain the pair`
      : "no results";
    const version = m.get("results_version");
    this.root.dataset.results = String(version);
    const answered = m.get("results_for");
    this.sender.answered(answered);
    const sentAt = this.sender.sentAt;
    if (tracing() && sentAt.has(answered)) {
      // sent: when the region these results answer left the browser (not the latest send)
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
}

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

export default { render };
