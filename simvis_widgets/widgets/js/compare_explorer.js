// CompareExplorer front end: one pair explained by several sessions (poolings, models, training snapshots),
// one row per session, every map on ONE colour scale. Hovering or painting in any row drives the same
// place in every row (positions travel as fractions of the image, so rows may have different grids); a slider
// steps through the rows in order (epochs); a difference view shows each row minus a reference row.
import "./widget.css";
import "./compare_explorer.css";
import { asBytes, decodeImage } from "./lib/bytes.js";
import { decodePayload } from "./lib/contributions.js";
import { exposeView } from "./lib/hooks.js";
import { ColorBar, Panel, el, initRoot, onPointerMove, setText } from "./lib/panel.js";
import { bestCell, fmt, maxAbs, pct, regionScore } from "./lib/readouts.js";

// The shared code this bundle runs, exported so the node tests drive the built file (tests/test_js_maths.py).
export { decodeFloats } from "./lib/bytes.js";
export { cellWeights } from "./lib/masks.js";
export { Panel, decodePayload };

const MODES = ["overview", "hover", "paint", "difference"];

class CompareView {
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.rows = [];
    this.buildControls();
    this.body = el("div", { class: "sv-rows" });
    this.readout = el("div", { class: "sv-readout", "data-testid": "readout" });
    initRoot(root, "simvis-compare");
    root.append(this.toolbar, this.body, this.colorbar.root, this.readout);
    this.hover = null; // { side, fx, fy }: the hovered place as fractions of the image
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
      title: "step through the sessions in order",
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
      title: "brush radius in image pixels",
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
        el("label", {}, "opacity ", this.opacityInput),
      ),
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
    setText(this.sliderLabel, this.rows.length ? (this.rows[m.get("current")]?.label ?? "") : "");
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
      caption: el("div", { class: "sv-row-caption", "data-testid": `row-caption-${index}` }),
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
      row.caption,
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
      p.strokeTo(fx * p.W, fy * p.H, (r * p.W) / source.W, false);
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
      `${this.rows.length} sessions on one colour scale ±${vmax.toExponential(2)}${minus}` +
        "; hover or paint in any row and every row follows.",
    );
    this.root.dataset.draws = String(Number(this.root.dataset.draws || 0) + 1);
  }
}

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

export default { render };
