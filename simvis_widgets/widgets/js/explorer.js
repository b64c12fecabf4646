// Explorer front end: the pair view (lib/pair_view.js) of the query (A) and the selected image (B), and a strip of
// the gallery's top-k for the selection on the query. Each hit's contributions against the query arrive once
// (when it enters the strip) and stay cached here, so hovering or painting on the query redraws the selected
// image's map and every thumbnail's in the same frame; the kernel only re-ranks (lib/region_sender.js).
import "./widget.css";
import "./explorer.css";
import { asBytes, decodeImage } from "./lib/bytes.js";
import { drawCellMap } from "./lib/colour.js";
import { PAYLOAD_KEYS, decodePayload } from "./lib/contributions.js";
import { exposeView, tracing } from "./lib/hooks.js";
import { Panel, el, setText } from "./lib/panel.js";
import { PairView, bindPairModel } from "./lib/pair_view.js";
import { maxAbs } from "./lib/readouts.js";
import { RegionSender } from "./lib/region_sender.js";

// The shared code this bundle runs, exported so the node tests drive the built file (tests/test_js_maths.py).
export { decodeFloats } from "./lib/bytes.js";
export { cellWeights } from "./lib/masks.js";
export { Panel, decodePayload };

const HITS_KEPT = 256; // cached hits beyond the strip's; a hit evicted and needed again is asked for again

/** One gallery hit as the browser keeps it: its contributions against the query and its strip card. */
function decodeHit(index, data) {
  const { contrib, mapB } = decodePayload(Object.fromEntries(PAYLOAD_KEYS.map((k) => [k, data[k]])));
  const [H, W] = data.size;
  const [gh, gw] = data.grid_b;
  // An odd whole number of heat pixels per cell puts a pixel centre on every cell centre: its exact colour.
  const per = 2 * Math.floor(Math.max(1, W / gw) / 2) + 1;
  const heat = el("canvas", { class: "sv-layer sv-heat", width: String(gw * per), height: String(gh * per) });
  const image = el("canvas", { class: "sv-layer", width: String(W), height: String(H) });
  const stack = el("div", { class: "sv-stack" }, image, heat);
  stack.style.aspectRatio = `${W} / ${H}`;
  const text = el("div", { class: "sv-card-text" });
  const label = el("div", { class: "sv-card-label" });
  const card = el("div", { class: "sv-card", "data-index": String(index) }, stack, text, label);
  const small = document.createElement("canvas");
  small.width = gw;
  small.height = gh;
  const thumb = asBytes(data.thumb);
  if (thumb.byteLength) {
    decodeImage(thumb, "image/jpeg").then((bitmap) => image.getContext("2d").drawImage(bitmap, 0, 0, W, H));
  }
  return { index, contrib, mapB, H, W, gh, gw, per, card, heat, text, label, small, shown: null, vmax: 1 };
}

class ExplorerView extends PairView {
  constructor(model, root) {
    super(model, root, "simvis-explorer");
    this.a.root.querySelector(".sv-label").textContent = "query";
    this.b.root.querySelector(".sv-label").textContent = "selected";
    this.swapButton.style.display = "none";
    this.hits = new Map();
    this.order = [];
    this.stripTrace = []; // with tracing on: one {sent, shown, version, id} per strip shown (bench_retrieval.py)
    this.sender = new RegionSender(model, () => (this.a.maskPixels > 0 ? this.a.weights : null));
    this.rankSelect = el(
      "select",
      { title: "what on the query ranks the strip", "data-testid": "rank-by" },
      el("option", { value: "region" }, "rank by painted region"),
      el("option", { value: "cell" }, "rank by hovered cell"),
      el("option", { value: "whole" }, "rank by whole image"),
    );
    this.rankSelect.addEventListener("change", () => this.setTrait("rank_by", this.rankSelect.value));
    this.kInput = el("input", { type: "number", min: "1", max: "100", step: "1", style: "width: 4em" });
    this.kInput.addEventListener("change", () => this.setTrait("k", Math.max(1, Number(this.kInput.value) || 1)));
    this.stripStatus = el("div", { class: "sv-status", "data-testid": "strip-status" });
    this.strip = el("div", { class: "sv-strip", "data-testid": "strip" });
    this.stripBox = el(
      "div",
      { class: "sv-strip-box" },
      el("div", { class: "sv-toolbar" }, this.rankSelect, el("label", {}, "k ", this.kInput)),
      this.stripStatus,
      this.strip,
    );
    root.append(this.stripBox);
  }

  syncControls() {
    super.syncControls();
    const m = this.model;
    this.rankSelect.value = m.get("rank_by");
    this.kInput.value = String(m.get("k"));
    this.stripBox.style.display = m.get("gallery_size") > 0 ? "" : "none";
    for (const hit of this.order) hit.card.classList.toggle("sv-selected", hit.index === m.get("selected"));
  }

  // ---- the strip -----------------------------------------------------------------------------------

  /** Forget the cached hits when the query changed: their contributions were against the old query. */
  checkQuery() {
    const version = this.model.get("query_version");
    if (this.hitsFor === version) return;
    this.hitsFor = version;
    this.hits.clear();
    this.order = [];
  }

  loadStrip() {
    const m = this.model;
    this.checkQuery(); // the strip of a new query may be heard of before its query_version
    const entries = m.get("strip") || [];
    let missing = false;
    for (const entry of entries) {
      if (entry.data) {
        this.hits.delete(entry.index);
        this.hits.set(entry.index, decodeHit(entry.index, entry.data));
      }
    }
    this.order = [];
    for (const entry of entries) {
      const hit = this.hits.get(entry.index);
      if (!hit) {
        missing = true;
        continue;
      }
      hit.rank = entry.rank;
      hit.score = entry.score;
      const labelled = entry.label !== null && entry.label !== undefined;
      setText(hit.text, `#${entry.rank + 1}  ${entry.score.toFixed(4)}`);
      setText(hit.label, labelled ? String(entry.label) : entry.source);
      hit.card.title = `${entry.source}: exact score ${entry.score}`;
      hit.heat.dataset.testid = `hit-heat-${entry.rank}`;
      hit.card.onclick = () => this.select(entry.index);
      this.order.push(hit);
    }
    for (const index of this.hits.keys()) {
      if (this.hits.size <= HITS_KEPT) break;
      if (!this.order.some((h) => h.index === index)) this.hits.delete(index);
    }
    this.strip.replaceChildren(...this.order.map((h) => h.card));
    if (missing && !this.isStatic) m.send({ event: "resend" });
    const answered = m.get("strip_for");
    this.sender.answered(answered);
    const version = m.get("strip_version");
    this.root.dataset.strip = String(version);
    this.syncControls();
    this.draw();
    const sentAt = this.sender.sentAt;
    if (tracing() && sentAt.has(answered)) {
      // sent: when the region this strip answers left the browser (not the latest send)
      this.stripTrace.push({ sent: sentAt.get(answered), shown: performance.now(), version, id: answered });
      if (this.stripTrace.length > 5000) this.stripTrace.splice(0, this.stripTrace.length - 5000);
    }
  }

  select(index) {
    if (this.isStatic || index === this.model.get("selected")) return;
    this.model.set("selected", index);
    this.model.save_changes();
    this.syncControls();
  }

  onKey(e) {
    if ((e.key === "ArrowRight" || e.key === "ArrowLeft") && this.order.length) {
      e.preventDefault();
      e.stopPropagation();
      const at = this.order.findIndex((h) => h.index === this.model.get("selected"));
      const step = e.key === "ArrowRight" ? 1 : -1;
      const next = at < 0 ? 0 : Math.max(0, Math.min(this.order.length - 1, at + step));
      this.select(this.order[next].index);
      return;
    }
    super.onKey(e);
  }

  onStroke(panel, final) {
    const m = this.model;
    if (panel !== this.a || this.isStatic || m.get("gallery_size") === 0 || m.get("rank_by") !== "region") return;
    this.sender.send(final);
  }

  // ---- drawing -------------------------------------------------------------------------------------

  /** Each hit's map for the selection on the query: the hovered cell, else the painted region (while painting,
   * or when the strip ranks by it), else the whole image. */
  stripMaps(views) {
    const m = this.model;
    const cell = views.cell && views.cell.side === "a" ? views.cell.rc : null;
    const region = this.a.maskPixels > 0 && (m.get("mode") === "paint" || m.get("rank_by") === "region");
    return this.order.map((hit) => {
      if (cell) return hit.contrib.point("a", cell[0] * this.a.gw + cell[1]);
      if (region) return hit.contrib.weighted("a", this.a.weights);
      return hit.mapB;
    });
  }

  currentMaps() {
    const views = super.currentMaps();
    views.strip = this.ready ? this.stripMaps(views) : [];
    return views;
  }

  sharedScale(views) {
    return maxAbs(views.a, views.b, ...views.strip);
  }

  drawExtra(views, vShared) {
    const lut = this.lut;
    const opacity = this.model.get("opacity");
    this.order.forEach((hit, k) => {
      const values = views.strip[k];
      if (!values) return;
      hit.shown = values;
      hit.vmax = vShared ?? maxAbs(values);
      hit.heat.style.opacity = String(opacity);
      drawCellMap(hit.heat.getContext("2d"), hit.small, values, hit.vmax, lut);
    });
    const m = this.model;
    const n = this.order.length;
    const rankBy = m.get("rank_by");
    let by = "whole image";
    if (rankBy === "region") by = this.a.maskPixels > 0 ? "painted region" : "whole image (nothing painted)";
    if (rankBy === "cell") by = m.get("hover_a").length ? "hovered cell" : "whole image (no cell hovered)";
    setText(
      this.stripStatus,
      n
        ? `top ${n} of ${m.get("gallery_size")} ranked by the query's ${by} (exact scores; maps on the colour bar's ` +
            `scale); click a result or use ← → to show it on the right`
        : "",
    );
  }
}

function render({ model, el: root }) {
  const view = new ExplorerView(model, root);
  const hide = exposeView(root, view);
  bindPairModel(model, view);
  view.loadStrip();
  model.on("change:query_version", () => view.checkQuery());
  model.on("change:strip_version", () => view.loadStrip());
  for (const name of ["k", "rank_by", "selected", "gallery_size"])
    model.on(`change:${name}`, () => view.syncControls());
  return hide;
}

export default { render };
