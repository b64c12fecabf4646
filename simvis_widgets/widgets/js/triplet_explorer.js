// TripletExplorer front end: the pair view (lib/pair_view.js) of the anchor A and the positive P, plus a third
// panel for the negative N. On the anchor: D = S_A(A, P) - S_A(A, N), exact (sum D + the global terms' difference
// = s(A, P) - s(A, N)). Hover or paint on the anchor only: P and N then show the cell's rows (or the region's
// weighted rows) of their two pairwise matrices, computed here from the payloads the kernel sent once.
import "./widget.css";
import "./triplet_explorer.css";
import { decodeImage } from "./lib/bytes.js";
import { decodePayload } from "./lib/contributions.js";
import { exposeView } from "./lib/hooks.js";
import { Panel, setText } from "./lib/panel.js";
import { PairView, bindPairModel } from "./lib/pair_view.js";
import { bestCell, fmt, maxAbs, pct, regionScore, sum } from "./lib/readouts.js";

// The shared code this bundle runs, exported so the node tests drive the built file (tests/test_js_maths.py).
export { decodeFloats } from "./lib/bytes.js";
export { cellWeights } from "./lib/masks.js";
export { Panel, decodePayload };

/** D = S_A(A, P) - S_A(A, N), cell by cell (float32, as the kernel computes it). */
export function differenceMap(mapAP, mapAN) {
  const d = new Float32Array(mapAP.length);
  for (let k = 0; k < d.length; k++) d[k] = mapAP[k] - mapAN[k];
  return d;
}

class TripletView extends PairView {
  constructor(model, root) {
    super(model, root, "simvis-triplet");
    this.n = new Panel("n", this);
    this.a.root.parentNode.append(this.n.root);
    this.a.root.querySelector(".sv-label").textContent = "anchor A: D = S(A,P) − S(A,N)";
    this.b.root.querySelector(".sv-label").textContent = "positive P";
    this.n.root.querySelector(".sv-label").textContent = "negative N";
    this.swapButton.style.display = "none";
    setText(
      this.readout.querySelector(".sv-hint"),
      "anchor: red where A prefers P, blue where A looks more like N · P, N: red adds to their similarity · " +
        "hover or paint on the anchor · keys: o h p (modes), e erase, b box, c clear, [ ] brush, g grid, r reset",
    );
  }

  /** Only the anchor takes the pointer: P and N follow it. */
  bindPointer(panel) {
    if (panel.side === "a") super.bindPointer(panel);
  }

  async loadPair() {
    const m = this.model;
    const token = (this.tripletToken = (this.tripletToken || 0) + 1);
    this.ready = false; // no draw mixes the old triplet with the new one
    const neg = m.get("negative");
    const payload = decodePayload(neg);
    const bitmap = await decodeImage(m.get("image_n"));
    if (token !== this.tripletToken) return;
    this.neg = { contrib: payload.contrib, mapA: payload.mapA, mapN: payload.mapB, score: neg.score };
    this.neg.globalTerm = neg.global_term;
    const [H, W] = m.get("size_n");
    this.n.setImage(bitmap, H, W, neg.grid_b[0], neg.grid_b[1]);
    this.D = null;
    await super.loadPair();
  }

  difference() {
    if (!this.D || this.DFor !== this.mapA) {
      this.D = differenceMap(this.mapA, this.neg.mapA);
      this.DFor = this.mapA;
    }
    return this.D;
  }

  get margin() {
    return this.model.get("score") - this.neg.score;
  }

  currentMaps() {
    const m = this.model;
    const mode = m.get("mode");
    const D = this.difference();
    const margin = this.margin;
    const views = { a: null, b: null, n: null, cell: null, match: null, matchN: null, info: "" };
    this.shownPart = null; // the part of the margin on show (hovered cell or painted region), for the readout
    if (mode === "overview") {
      views.a = D;
      views.b = this.mapB;
      views.n = this.neg.mapN;
      views.info = "Overview: D on the anchor; on P and on N each pair's map.";
    } else if (mode === "hover") {
      const cell = m.get("hover_a");
      if (cell && cell.length === 2) {
        const i = cell[0] * this.a.gw + cell[1];
        views.b = this.contrib.point("a", i);
        views.n = this.neg.contrib.point("a", i);
        views.cell = { side: "a", rc: cell };
        views.match = { side: "b", rc: bestCell(views.b, this.b.gw).rc };
        views.matchN = bestCell(views.n, this.n.gw).rc;
        this.shownPart = D[i];
        views.info =
          `Cell (${cell[0]}, ${cell[1]}) of the anchor: its part of the margin D = ${fmt(D[i])} ` +
          `(${pct(D[i], margin)}) = ${fmt(this.mapA[i])} toward P − ${fmt(this.neg.mapA[i])} toward N.`;
      } else views.info = "Hover: move over the anchor; P and N show where that cell is matched.";
    } else if (this.a.maskPixels > 0) {
      const w = this.a.weights;
      views.b = this.contrib.weighted("a", w);
      views.n = this.neg.contrib.weighted("a", w);
      const part = regionScore(w, D);
      this.shownPart = part;
      views.info =
        `Region on the anchor: its part of the margin ${fmt(part)} (${pct(part, margin)}) = ` +
        `${fmt(regionScore(w, this.mapA))} toward P − ${fmt(regionScore(w, this.neg.mapA))} toward N.`;
    } else views.info = "Paint: drag on the anchor; P and N show where the region is matched.";
    return views;
  }

  sharedScale(views) {
    return maxAbs(views.a, views.b, views.n);
  }

  drawExtra(views, vShared) {
    const m = this.model;
    this.n.drawHeat(views.n, vShared ?? maxAbs(views.n), this.lut, m.get("opacity"));
    this.n.drawMarks({ grid: m.get("show_grid"), cell: null, match: views.matchN, showMask: false, brush: null });
  }

  drawCaptions(views, vShared) {
    const m = this.model;
    for (const panel of [this.a, this.b, this.n]) {
      const values = views[panel.side];
      const scale = (vShared ?? maxAbs(values)).toExponential(2);
      setText(panel.caption, values ? `sum ${fmt(sum(values))}; scale ±${scale}` : "");
    }
    const v = vShared ?? maxAbs(views.a, views.b, views.n);
    this.colorbar.label(v);
    this.colorbar.root.title = vShared === null ? "per-view scales: see each caption" : "one scale for all three views";
    const exact = m.get("exact") ? "exact" : "APPROXIMATE (linearisation)";
    const about = `${m.get("similarity")}, ${m.get("pooling")}, ${m.get("model_name")}, ${exact}`;
    setText(
      this.readoutScore,
      `s(A,P) = ${m.get("score").toFixed(4)}, s(A,N) = ${this.neg.score.toFixed(4)}, ` +
        `margin ${fmt(this.margin)} (${about})`,
    );
    const g = m.get("global_term") - this.neg.globalTerm;
    setText(
      this.readoutSums,
      `Σ D = ${fmt(sum(this.difference()))}` +
        (g ? `, global terms' difference ${fmt(g)}: Σ D + it = margin` : ": Σ D = margin"),
    );
    setText(this.readoutInfo, views.info);
  }
}

function render({ model, el: root }) {
  const view = new TripletView(model, root);
  const hide = exposeView(root, view);
  bindPairModel(model, view);
  return hide;
}

export default { render };
