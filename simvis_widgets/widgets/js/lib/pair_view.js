// The pair view every two-image widget shows: linked image panels A and B whose hover and paint maps are computed
// in the browser from the pair's contributions (contributions.js), drawn on the shared panels (panel.js).
import { asBytes, decodeImage } from "./bytes.js";
import { PAYLOAD_KEYS, decodePayload } from "./contributions.js";
import { tracing } from "./hooks.js";
import { boxMask, maskFromTrait } from "./masks.js";
import { ColorBar, Panel, el, initRoot, onPointerMove, setText } from "./panel.js";
import { bestCell, fmt, maxAbs, pct, regionScore, sum } from "./readouts.js";

const MODES = ["overview", "hover", "paint"];
const CMAPS = ["RdBu_r", "coolwarm", "bwr", "seismic", "PiYG", "PuOr_r", "viridis"];

/** The pair view: toolbar, panels A and B, colour bar and readouts. Subclasses extend it through `onStroke`
 * (a brush edit on a panel), `sharedScale` (the scale of every map on show) and `drawExtra` (more views). */
export class PairView {
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
    const token = (this.loadToken = (this.loadToken || 0) + 1);
    const [ha, wa] = m.get("grid_a");
    const [hb, wb] = m.get("grid_b");
    const payload = decodePayload(Object.fromEntries(PAYLOAD_KEYS.map((k) => [k, m.get(k)])));
    const [Ha, Wa] = m.get("size_a");
    const [Hb, Wb] = m.get("size_b");
    const [bitmapA, bitmapB] = await Promise.all([decodeImage(m.get("image_a")), decodeImage(m.get("image_b"))]);
    if (token !== this.loadToken) return; // a newer pair arrived while these images decoded
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
          onclick: () => this.setTrait("mode", mode),
        },
        `${key}${mode.slice(1)}`,
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
      "data-testid": "brush",
    });
    this.brushInput.addEventListener("input", () => this.setTrait("brush", Number(this.brushInput.value)));
    this.eraseBox = el("input", { type: "checkbox", title: "erase (key e)" });
    this.eraseBox.addEventListener("change", () => this.setTrait("erase", this.eraseBox.checked));
    this.boxBox = el("input", {
      type: "checkbox",
      title: "drag a rectangle instead of a brush (key b)",
      "data-testid": "box",
    });
    this.boxBox.addEventListener("change", () => this.setTrait("box", this.boxBox.checked));
    const clear = el(
      "button",
      { class: "sv-btn", title: "clear both masks (key c)", onclick: () => this.clearMasks() },
      "Clear",
    );
    this.paintGroup = el(
      "div",
      { class: "sv-group" },
      el("label", {}, "brush ", this.brushInput),
      el("label", {}, this.eraseBox, " erase"),
      el("label", {}, this.boxBox, " box"),
      clear,
    );
    this.cmapSelect = el("select", { title: "colormap", "data-testid": "cmap" });
    const cmaps = new Set([...CMAPS, m.get("cmap")]);
    for (const c of cmaps) this.cmapSelect.append(el("option", { value: c }, c));
    this.cmapSelect.addEventListener("change", () => this.setTrait("cmap", this.cmapSelect.value));
    this.opacityInput = el("input", { type: "range", min: "0", max: "1", step: "0.05", title: "overlay opacity" });
    this.opacityInput.addEventListener("input", () => this.setTrait("opacity", Number(this.opacityInput.value)));
    this.scaleSelect = el(
      "select",
      { title: "colour scale" },
      el("option", { value: "shared" }, "shared scale"),
      el("option", { value: "per-view" }, "per-view scale"),
    );
    this.scaleSelect.addEventListener("change", () => this.setTrait("scale_mode", this.scaleSelect.value));
    this.gridBox = el("input", { type: "checkbox", title: "show the feature cells (key g)" });
    this.gridBox.addEventListener("change", () => this.setTrait("show_grid", this.gridBox.checked));
    const swap = (this.swapButton = el(
      "button",
      { class: "sv-btn", title: "swap A and B", onclick: () => this.model.send({ event: "swap" }) },
      "Swap",
    ));
    const reset = el(
      "button",
      { class: "sv-btn", title: "back to the overview, masks cleared (key r)", onclick: () => this.reset() },
      "Reset",
    );
    if (this.isStatic) swap.disabled = true;
    const view = el(
      "div",
      { class: "sv-group" },
      this.cmapSelect,
      el("label", {}, "opacity ", this.opacityInput),
      this.scaleSelect,
      el("label", {}, this.gridBox, " grid"),
    );
    this.toolbar = el(
      "div",
      { class: "sv-toolbar" },
      modes,
      this.paintGroup,
      view,
      el("div", { class: "sv-group" }, swap, reset),
    );
    this.colorbar = new ColorBar();
    this.readoutScore = el("div", { class: "sv-score" });
    this.readoutSums = el("div");
    this.readoutInfo = el("div", { "data-testid": "info" });
    const hint = el(
      "div",
      { class: "sv-hint" },
      "red adds to the similarity, blue subtracts · keys: o h p (modes), e erase, b box, c clear, [ ] brush, g grid, r reset",
    );
    this.readout = el(
      "div",
      { class: "sv-readout", "data-testid": "readout" },
      this.readoutScore,
      this.readoutSums,
      this.readoutInfo,
      hint,
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
      this.a.cachedRect = this.b.cachedRect = null; // the toolbar's height may change
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
      "]": () => this.setTrait("brush", Math.min(120, m.get("brush") + 4)),
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
          this.local = true; // our own change: the change listeners must not draw a second time
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
        views.info =
          `Cell (${cell[0]}, ${cell[1]}) of ${side.toUpperCase()} carries ${fmt(own)} (${pct(own, score)} of the score); ` +
          `best match on ${dst.side.toUpperCase()}: cell (${best.rc[0]}, ${best.rc[1]}), ${fmt(values[best.index], 5)}.`;
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
      views.info = parts.length
        ? `Paint: ${parts.join("; ")}.`
        : "Paint: drag on either image to paint a region; the other shows where it is matched.";
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
      const brush = brushHere
        ? { x: this.brushAt.x, y: this.brushAt.y, r: m.get("brush"), erase: m.get("erase") }
        : null;
      panel.drawMarks({
        grid: m.get("show_grid"),
        cell: views.cell && views.cell.side === panel.side ? views.cell.rc : null,
        match: views.match && views.match.side === panel.side ? views.match.rc : null,
        showMask: paint,
        brush,
      });
    }
    this.drawExtra(views, shared ? vShared : null);
    this.drawCaptions(views, shared ? vShared : null);
    this.lastDraw = performance.now();
    if (eventTimes && tracing()) {
      for (const t of eventTimes) this.trace.push({ event: t, drawn: this.lastDraw, batch: eventTimes.length });
      if (this.trace.length > 5000) this.trace.splice(0, this.trace.length - 5000);
    }
    this.root.dataset.draws = String(Number(this.root.dataset.draws || 0) + 1);
  }

  /** A brush edit on `panel` (`final`: the stroke ended or the mask was cleared). */
  onStroke() {}

  /** The one colour scale of every map on show (scale_mode "shared"). */
  sharedScale(views) {
    return maxAbs(views.a, views.b);
  }

  /** Draw views beyond the two panels; `vShared` is the shared scale, or null for per-view scales. */
  drawExtra() {}

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
      `Σ map A = ${this.sumA.toFixed(4)}, Σ map B = ${this.sumB.toFixed(4)}` +
        (g ? `, global (bias) term ${fmt(g)}: maps + global term = score` : ": each map adds up to the score"),
    );
    setText(this.readoutInfo, views.info);
  }
}

/** Keep `view` in step with its model (the pair's traits and the interaction state); starts loading the pair. */
export function bindPairModel(model, view) {
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
