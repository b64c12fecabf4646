// TextExplorer front end: two passages side by side, every token shaded by its contribution to the similarity on
// one signed colour scale. The pair's token-pair matrix P arrives once (contributions.js decodes it); every hover
// and span map is computed here:
//   hover token i of A -> row i of P over B        hover token j of B -> column j of P over A
//   span [s, e) of A   -> sum_{i in [s, e)} P[i, :] over B, its share of the score = sum of map A over the span
import "./widget.css";
import "./text_explorer.css";
import { lutColour } from "./lib/colour.js";
import { PAYLOAD_KEYS, decodePayload } from "./lib/contributions.js";
import { exposeView, tracing } from "./lib/hooks.js";
import { ColorBar, el, initRoot, onPointerMove, setText } from "./lib/panel.js";
import { argmax, fmt, maxAbs, pct, regionScore, sum } from "./lib/readouts.js";
import { inkOn, passageSegments, spanBetween, spanWeights, validSpan } from "./lib/text_tokens.js";
import { asBytes } from "./lib/bytes.js";

// The shared code this bundle runs, exported so the node tests drive the built file.
export { decodeFloats } from "./lib/bytes.js";
export { decodePayload, lutColour, passageSegments, spanBetween, spanWeights };

const SIDES = ["a", "b"];
const other = (side) => (side === "a" ? "b" : "a");

/** One passage: its token elements (`tokens[i]`), built from the text and the tokens' character spans. */
class Passage {
  constructor(side) {
    this.side = side;
    this.label = el("div", { class: "sv-label" });
    this.body = el("div", { class: "sv-passage", "data-testid": `passage-${side}` });
    this.caption = el("div", { class: "sv-caption", "data-testid": `caption-${side}` });
    this.root = el("div", { class: "sv-text-panel" }, this.label, this.body, this.caption);
    this.tokens = [];
  }

  setTokens(text, tokens, offsets, special) {
    this.body.replaceChildren();
    this.tokens = [];
    this.strings = tokens;
    for (const seg of passageSegments(text, tokens, offsets, special)) {
      if (seg.kind === "gap") {
        this.body.append(document.createTextNode(seg.text));
        continue;
      }
      const node = el(
        "span",
        {
          class: seg.special ? "sv-tok sv-special" : "sv-tok",
          "data-i": String(seg.i),
          "data-testid": `tok-${this.side}-${seg.i}`,
        },
        seg.text,
      );
      this.tokens[seg.i] = node;
      this.body.append(node);
    }
    this.shown = null;
  }

  /** Shade every token by `values` on [-vmax, vmax] (null: no shading); mark the hovered token and the span. */
  paint(values, vmax, lut, hovered, span) {
    for (let i = 0; i < this.tokens.length; i++) {
      const node = this.tokens[i];
      if (values) {
        const rgb = lutColour(values[i], vmax, lut);
        node.style.backgroundColor = `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
        node.style.color = inkOn(rgb);
      } else {
        node.style.backgroundColor = "";
        node.style.color = "";
      }
      node.classList.toggle("sv-hovered", i === hovered);
      node.classList.toggle("sv-in-span", Boolean(span) && i >= span[0] && i < span[1]);
    }
  }

  /** The token index under a pointer event, or -1. */
  tokenAt(event) {
    const node = event.target && event.target.closest ? event.target.closest(".sv-tok") : null;
    return node && this.body.contains(node) ? Number(node.dataset.i) : -1;
  }

  /** The passage text of tokens [start, stop), shortened for a readout. */
  spanText(span) {
    const words = this.tokens.slice(span[0], span[1]).map((n) => n.textContent);
    const text = words.join(" ");
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  }
}

export class TextView {
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.isStatic = Boolean(model.get("_static"));
    this.a = new Passage("a");
    this.b = new Passage("b");
    this.hover = null; // { side, i }
    this.drag = null; // { side, anchor, focus }
    this.trace = [];
    initRoot(root, "simvis-text");
    this.buildControls();
    const panels = el("div", { class: "sv-text-panels" }, this.a.root, this.b.root);
    root.append(this.toolbar, panels, this.colorbar.root, this.readout, this.stripBox);
    root.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        this.clearSpans();
      }
    });
    for (const side of SIDES) this.bindPointer(this[side]);
    window.addEventListener("pointerup", (this.onPointerUp = () => this.endDrag()));
  }

  // ---- data --------------------------------------------------------------------------------------

  loadText() {
    const m = this.model;
    const payload = decodePayload(Object.fromEntries(PAYLOAD_KEYS.map((k) => [k, m.get(k)])));
    this.contrib = payload.contrib;
    this.mapA = payload.mapA;
    this.mapB = payload.mapB;
    for (const side of SIDES) {
      this[side].setTokens(
        m.get(`text_${side}`),
        m.get(`tokens_${side}`),
        m.get(`offsets_${side}`),
        m.get(`special_${side}`),
      );
    }
    this.hover = null;
    this.drag = null;
    this.loadLut();
    this.syncControls();
    this.ready = true;
    this.root.dataset.ready = String(Number(this.root.dataset.ready || 0) + 1);
    this.draw();
  }

  loadLut() {
    this.lut = asBytes(this.model.get("lut"));
    this.colorbar.paint(this.lut);
  }

  span(side) {
    const span = this.model.get(`span_${side}`);
    return validSpan(span, this[side].tokens.length) ? span : null;
  }

  // ---- controls ----------------------------------------------------------------------------------

  buildControls() {
    this.wordsBox = el("input", {
      type: "checkbox",
      title: "group sub-word pieces into words (exact: sums of pieces)",
    });
    this.wordsBox.addEventListener("change", () => {
      this.model.set("words", this.wordsBox.checked);
      this.model.save_changes();
    });
    const clear = el(
      "button",
      { class: "sv-btn", title: "clear the selected spans (Escape)", onclick: () => this.clearSpans() },
      "Clear span",
    );
    this.toolbar = el(
      "div",
      { class: "sv-toolbar" },
      el("div", { class: "sv-group" }, el("label", {}, this.wordsBox, " words")),
      el("div", { class: "sv-group" }, clear),
    );
    this.colorbar = new ColorBar();
    this.readoutScore = el("div", { class: "sv-score", "data-testid": "score" });
    this.readoutSums = el("div");
    this.readoutInfo = el("div", { "data-testid": "info" });
    const hint = el(
      "div",
      { class: "sv-hint" },
      "red adds to the similarity, blue takes away · hover a token: where it is matched in the other passage · " +
        "drag (or click, then shift-click) over tokens to select a span · Escape clears",
    );
    this.readout = el(
      "div",
      { class: "sv-readout", "data-testid": "readout" },
      this.readoutScore,
      this.readoutSums,
      this.readoutInfo,
      hint,
    );
    this.stripStatus = el("div", { class: "sv-status", "data-testid": "strip-status" });
    this.strip = el("div", { class: "sv-text-strip", "data-testid": "strip" });
    this.stripBox = el("div", { class: "sv-strip-box" }, this.stripStatus, this.strip);
  }

  syncControls() {
    const m = this.model;
    this.wordsBox.checked = Boolean(m.get("words"));
    this.wordsBox.disabled = this.isStatic || Boolean(m.get("words_locked"));
    this.a.label.textContent = m.get("gallery_size") ? "A · query" : "passage A";
    this.b.label.textContent = m.get("selected") >= 0 ? `B · gallery passage ${m.get("selected")}` : "passage B";
  }

  setSpan(side, span) {
    this.model.set(`span_${side}`, span);
    if (span) this.model.set(`span_${other(side)}`, null); // one span at a time from the mouse
    this.model.save_changes();
    this.draw();
  }

  clearSpans() {
    this.model.set("span_a", null);
    this.model.set("span_b", null);
    this.model.save_changes();
    this.draw();
  }

  // ---- pointer -----------------------------------------------------------------------------------

  bindPointer(passage) {
    const side = passage.side;
    onPointerMove(passage.body, (e) => {
      if (!this.ready) return;
      const i = passage.tokenAt(e);
      if (this.drag) {
        if (this.drag.side === side && i >= 0 && i !== this.drag.focus) {
          this.drag.focus = i;
          this.draw([e.timeStamp]);
        }
        return;
      }
      const cur = this.hover;
      if (i < 0) {
        if (cur) this.setHover(null, e.timeStamp);
      } else if (!cur || cur.side !== side || cur.i !== i) {
        this.setHover({ side, i }, e.timeStamp);
      }
    });
    passage.body.addEventListener("pointerleave", (e) => {
      if (this.hover && this.hover.side === side && !this.drag) this.setHover(null, e.timeStamp);
    });
    passage.body.addEventListener("pointerdown", (e) => {
      if (!this.ready || e.button !== 0) return;
      const i = passage.tokenAt(e);
      e.preventDefault();
      if (i < 0) return;
      const current = this.span(side);
      const anchor = e.shiftKey && this.anchor && this.anchor.side === side ? this.anchor.i : i;
      if (e.shiftKey && !(this.anchor && this.anchor.side === side) && current) {
        this.drag = { side, anchor: current[0], focus: i };
      } else {
        this.drag = { side, anchor, focus: i };
      }
      if (!e.shiftKey) this.anchor = { side, i };
      this.hover = null;
      this.draw([e.timeStamp]);
    });
  }

  endDrag() {
    if (!this.drag) return;
    const { side, anchor, focus } = this.drag;
    this.drag = null;
    this.setSpan(side, spanBetween(anchor, focus));
  }

  setHover(hover, eventTime) {
    this.hover = hover;
    for (const side of SIDES) {
      const value = hover && hover.side === side ? hover.i : -1;
      this.model.set(`hover_${side}`, value);
    }
    this.saveSoon();
    this.draw([eventTime]);
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

  // ---- drawing -----------------------------------------------------------------------------------

  /** What each passage shows: its values (or null), the hovered token, the span marked, and the readout line. */
  currentViews() {
    const m = this.model;
    const score = m.get("score");
    const views = { a: null, b: null, hovered: { a: -1, b: -1 }, spans: { a: null, b: null }, info: "" };
    const own = (side) => (side === "a" ? this.mapA : this.mapB);
    if (this.drag) {
      const { side, anchor, focus } = this.drag;
      const span = spanBetween(anchor, focus);
      views.spans[side] = span;
      views[other(side)] = this.contrib.weighted(side, spanWeights(this[side].tokens.length, span));
      const share = regionScore(spanWeights(this[side].tokens.length, span), own(side));
      views.info = this.spanLine(side, span, share, score);
      return views;
    }
    if (this.hover) {
      const { side, i } = this.hover;
      const dst = other(side);
      const values = this.contrib.point(side, i);
      const best = argmax(values);
      views[dst] = values;
      views.hovered[side] = i;
      views.hovered[dst] = best;
      views.spans[side] = this.span(side);
      const carried = own(side)[i];
      views.info =
        `Token "${this[side].tokens[i].textContent}" of ${side.toUpperCase()} carries ${fmt(carried)} ` +
        `(${pct(carried, score)} of the score); best match in ${dst.toUpperCase()}: ` +
        `"${this[dst].tokens[best].textContent}" ${fmt(values[best], 5)}.`;
      return views;
    }
    const lines = [];
    for (const side of SIDES) {
      const span = this.span(side);
      if (!span) continue;
      views.spans[side] = span;
      const w = spanWeights(this[side].tokens.length, span);
      views[other(side)] = this.contrib.weighted(side, w);
      lines.push(this.spanLine(side, span, regionScore(w, own(side)), score));
    }
    if (lines.length) {
      views.info = lines.join(" ");
      return views;
    }
    views.a = this.mapA;
    views.b = this.mapB;
    views.info = "Each token's share of the score (its row or column of P summed): the shares add up to the score.";
    return views;
  }

  spanLine(side, span, share, score) {
    return (
      `Span ${side.toUpperCase()} [${span[0]}, ${span[1]}) "${this[side].spanText(span)}": ` +
      `span score ${fmt(share)} (${pct(share, score)} of the score); the other passage shows where it is matched.`
    );
  }

  draw(eventTimes = null) {
    if (!this.ready) return;
    const m = this.model;
    const views = this.currentViews();
    const vmax = maxAbs(views.a, views.b);
    for (const side of SIDES) {
      this[side].paint(views[side], vmax, this.lut, views.hovered[side], views.spans[side]);
      const values = views[side];
      setText(this[side].caption, values ? `sum ${fmt(sum(values))}; scale ±${vmax.toExponential(2)}` : "");
    }
    this.colorbar.label(vmax);
    const exact = m.get("exact") ? "exact" : "APPROXIMATE";
    const about = `${m.get("similarity")}, ${m.get("pooling")}, ${m.get("model_name")}, ${exact}`;
    setText(this.readoutScore, `score ${m.get("score").toFixed(4)} (${about})`);
    const g = m.get("global_term");
    setText(
      this.readoutSums,
      `Σ shares A = ${sum(this.mapA).toFixed(4)}, Σ shares B = ${sum(this.mapB).toFixed(4)}` +
        (g ? `, global term ${fmt(g)}: shares + global term = score` : ": each passage's shares add up to the score"),
    );
    setText(this.readoutInfo, views.info);
    this.lastDraw = performance.now();
    if (eventTimes && tracing()) {
      for (const t of eventTimes) this.trace.push({ event: t, drawn: this.lastDraw });
      if (this.trace.length > 5000) this.trace.splice(0, this.trace.length - 5000);
    }
    this.root.dataset.draws = String(Number(this.root.dataset.draws || 0) + 1);
  }

  // ---- the gallery strip -------------------------------------------------------------------------

  drawStrip() {
    const m = this.model;
    const entries = m.get("strip") || [];
    this.stripBox.style.display = m.get("gallery_size") ? "" : "none";
    const span = this.span("a");
    setText(
      this.stripStatus,
      `Top ${entries.length} of ${m.get("gallery_size")} passages for ` +
        (span ? `span A [${span[0]}, ${span[1]})` : "passage A") +
        (this.isStatic ? " (exported: re-ranking and selecting need the kernel)" : " · click one to compare it"),
    );
    this.strip.replaceChildren();
    // Each card: the passage shaded by its hit map (where the query or its span is matched), one scale for all.
    const vmax = maxAbs(...entries.map((e) => e.map || null));
    for (const entry of entries) {
      const passage = new Passage(`hit${entry.rank}`);
      if (entry.map && entry.tokens) {
        passage.setTokens(entry.text, entry.tokens, entry.offsets, entry.special);
        passage.paint(Float32Array.from(entry.map), vmax, this.lut, -1, null);
      } else passage.body.textContent = entry.text;
      passage.body.className = "sv-card-passage";
      const card = el(
        "div",
        { class: "sv-text-card", "data-index": String(entry.index), "data-testid": `hit-${entry.rank}` },
        el("div", { class: "sv-card-text" }, `#${entry.rank + 1} ${entry.score.toFixed(4)}`),
        passage.body,
      );
      card.classList.toggle("sv-selected", entry.index === m.get("selected"));
      if (!this.isStatic) {
        card.addEventListener("click", () => {
          this.model.set("selected", entry.index);
          this.model.save_changes();
        });
      }
      this.strip.append(card);
    }
    this.root.dataset.strip = String(m.get("strip_version"));
  }
}

function render({ model, el: root }) {
  const view = new TextView(model, root);
  const hide = exposeView(root, view);
  view.loadText();
  view.drawStrip();
  model.on("change:_text_version", () => {
    view.loadText();
    view.drawStrip();
  });
  model.on("change:lut", () => {
    view.loadLut();
    view.draw();
    view.drawStrip();
  });
  for (const name of ["span_a", "span_b"]) model.on(`change:${name}`, () => view.draw());
  for (const name of ["strip_version", "selected", "gallery_size"]) {
    model.on(`change:${name}`, () => {
      view.syncControls();
      view.drawStrip();
    });
  }
  model.on("change:words", () => view.syncControls());
  return () => {
    window.removeEventListener("pointerup", view.onPointerUp);
    hide();
  };
}

export default { render };
