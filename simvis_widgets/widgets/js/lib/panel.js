// The view parts the widgets share: DOM helpers, the colour bar and the image panel (an image with its heat
// layer and its mark layer: grid, cells, painted mask, brush).
import { drawCellMap } from "./colour.js";
import { CellMask } from "./masks.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

/** Set a node's text only when it changes (no needless DOM writes, hence no needless layouts). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Make `root` a focusable widget whose keys Jupyter leaves alone. */
export function initRoot(root, kind) {
  root.classList.add("simvis-widget", kind);
  root.setAttribute("tabindex", "0");
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("data-p-suppress-shortcuts", "true");
}

/** Call `handler` for every pointer move on `target` as early as the browser can: Chromium's
 * "pointerrawupdate" arrives as soon as the input does, while "pointermove" waits for the next animation
 * frame (measured: ~5 ms p50 of pure queueing). Both are listened to (synthetic events and other browsers
 * only send "pointermove"); the later copy of a move already handled is skipped. In a frame (the documentation
 * site, VS Code and Colab outputs) only "pointermove" is used: Chromium gives a framed page's
 * "pointerrawupdate" events the top page's coordinates, which would put hover and paint on the wrong cells. */
export function onPointerMove(target, handler) {
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

/** A colour bar: the colour table as a strip, with -v, 0 and +v labels set by `label(v)`. */
export class ColorBar {
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
}

/** One image with its heat layer (colour-mapped cell values) and its mark layer (grid, cells, mask, brush). The
 * painted mask is a CellMask; `mask`, `weights` and `maskPixels` read it. */
export class Panel {
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
    this.cells = null; // the CellMask, made by setImage
    this.shown = null; // values currently drawn on the heat layer
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
        ctx.moveTo(0, (r * H) / gh);
        ctx.lineTo(W, (r * H) / gh);
      }
      for (let c = 1; c < gw; c++) {
        ctx.moveTo((c * W) / gw, 0);
        ctx.lineTo((c * W) / gw, H);
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
      d[4 * k + 3] = Math.round((110 * value) / 255);
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
}
