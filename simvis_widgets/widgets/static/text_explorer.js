// simvis_widgets/widgets/js/lib/colour.js
function lutIndex(value, vmax) {
  return Math.max(0, Math.min(255, Math.round((value / vmax + 1) / 2 * 255)));
}
function lutColour(value, vmax, lut) {
  const t = 3 * lutIndex(value, vmax);
  return [lut[t], lut[t + 1], lut[t + 2]];
}

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

// simvis_widgets/widgets/js/lib/text_tokens.js
function passageSegments(text, tokens, offsets, special) {
  const chars = Array.from(text);
  const slice = (a, b) => chars.slice(a, b).join("");
  const out = [];
  let end = 0;
  let afterOwn = false;
  for (let i = 0; i < tokens.length; i++) {
    const [s, e] = offsets && offsets[i] ? offsets[i] : [0, 0];
    const own = !special[i] && e > s && s >= end && e <= chars.length;
    if (own) {
      if (s > end) out.push({ kind: "gap", text: slice(end, s) });
      else if (out.length && !afterOwn) out.push({ kind: "gap", text: " " });
      out.push({ kind: "token", i, text: slice(s, e), special: false });
      end = e;
    } else {
      if (out.length) out.push({ kind: "gap", text: " " });
      out.push({ kind: "token", i, text: tokens[i], special: Boolean(special[i]) });
    }
    afterOwn = own;
  }
  return out;
}
function spanBetween(anchor, focus) {
  return [Math.min(anchor, focus), Math.max(anchor, focus) + 1];
}
function validSpan(span, n) {
  return Array.isArray(span) && span.length === 2 && Number.isInteger(span[0]) && Number.isInteger(span[1]) && span[0] >= 0 && span[0] < span[1] && span[1] <= n;
}
function spanWeights(n, span) {
  const w = new Float32Array(n);
  for (let k = span[0]; k < span[1]; k++) w[k] = 1;
  return w;
}
function inkOn([r, g, b]) {
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 ? "#111" : "#fff";
}

// simvis_widgets/widgets/js/text_explorer.js
var SIDES = ["a", "b"];
var other = (side) => side === "a" ? "b" : "a";
var Passage = class {
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
          "data-testid": `tok-${this.side}-${seg.i}`
        },
        seg.text
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
};
var TextView = class {
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.isStatic = Boolean(model.get("_static"));
    this.a = new Passage("a");
    this.b = new Passage("b");
    this.hover = null;
    this.drag = null;
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
    window.addEventListener("pointerup", this.onPointerUp = () => this.endDrag());
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
        m.get(`special_${side}`)
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
      title: "group sub-word pieces into words (exact: sums of pieces)"
    });
    this.wordsBox.addEventListener("change", () => {
      this.model.set("words", this.wordsBox.checked);
      this.model.save_changes();
    });
    const clear = el(
      "button",
      { class: "sv-btn", title: "clear the selected spans (Escape)", onclick: () => this.clearSpans() },
      "Clear span"
    );
    this.toolbar = el(
      "div",
      { class: "sv-toolbar" },
      el("div", { class: "sv-group" }, el("label", {}, this.wordsBox, " words")),
      el("div", { class: "sv-group" }, clear)
    );
    this.colorbar = new ColorBar();
    this.readoutScore = el("div", { class: "sv-score", "data-testid": "score" });
    this.readoutSums = el("div");
    this.readoutInfo = el("div", { "data-testid": "info" });
    const hint = el(
      "div",
      { class: "sv-hint" },
      "red adds to the similarity, blue takes away · hover a token: where it is matched in the other passage · drag (or click, then shift-click) over tokens to select a span · Escape clears"
    );
    this.readout = el(
      "div",
      { class: "sv-readout", "data-testid": "readout" },
      this.readoutScore,
      this.readoutSums,
      this.readoutInfo,
      hint
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
    if (span) this.model.set(`span_${other(side)}`, null);
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
    const own = (side) => side === "a" ? this.mapA : this.mapB;
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
      views.info = `Token "${this[side].tokens[i].textContent}" of ${side.toUpperCase()} carries ${fmt(carried)} (${pct(carried, score)} of the score); best match in ${dst.toUpperCase()}: "${this[dst].tokens[best].textContent}" ${fmt(values[best], 5)}.`;
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
    return `Span ${side.toUpperCase()} [${span[0]}, ${span[1]}) "${this[side].spanText(span)}": span score ${fmt(share)} (${pct(share, score)} of the score); the other passage shows where it is matched.`;
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
      `Σ shares A = ${sum(this.mapA).toFixed(4)}, Σ shares B = ${sum(this.mapB).toFixed(4)}` + (g ? `, global term ${fmt(g)}: shares + global term = score` : ": each passage's shares add up to the score")
    );
    setText(this.readoutInfo, views.info);
    this.lastDraw = performance.now();
    if (eventTimes && tracing()) {
      for (const t of eventTimes) this.trace.push({ event: t, drawn: this.lastDraw });
      if (this.trace.length > 5e3) this.trace.splice(0, this.trace.length - 5e3);
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
      `Top ${entries.length} of ${m.get("gallery_size")} passages for ` + (span ? `span A [${span[0]}, ${span[1]})` : "passage A") + (this.isStatic ? " (exported: re-ranking and selecting need the kernel)" : " · click one to compare it")
    );
    this.strip.replaceChildren();
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
        passage.body
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
};
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
var text_explorer_default = { render };
export {
  TextView,
  decodeFloats,
  decodePayload,
  text_explorer_default as default,
  lutColour,
  passageSegments,
  spanBetween,
  spanWeights
};
