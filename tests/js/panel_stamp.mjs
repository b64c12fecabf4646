// Runs the brush of a built widget bundle (Panel.setMask / strokeTo / endStroke) in node, with a minimal stand-in
// for the few DOM calls a Panel makes, on a case written by tests/test_js_maths.py.
// usage: node panel_stamp.mjs BUNDLE CASE.json  -> JSON on stdout: after each stroke the panel's cell
// weights, its painted-pixel count and its mask (base64, 0 / 255 per pixel).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const noop = () => {};
const context = new Proxy({}, { get: () => noop, set: () => true });
function fakeNode() {
  return {
    style: {},
    children: [],
    classList: { add: noop },
    setAttribute: noop,
    addEventListener: noop,
    append(...c) {
      this.children.push(...c);
    },
    getContext: () => context,
    getBoundingClientRect: () => ({ left: 0, top: 0, width: 1, height: 1 }),
  };
}
globalThis.document = { createElement: fakeNode };
globalThis.ImageData = class {
  constructor(w, h) {
    this.width = w;
    this.height = h;
    this.data = new Uint8ClampedArray(4 * w * h);
  }
};

const [modulePath, casePath] = process.argv.slice(2);
const m = await import(pathToFileURL(modulePath).href);
const c = JSON.parse(readFileSync(casePath, "utf8"));
const panel = new m.Panel("a", null);
panel.setImage({}, c.H, c.W, c.gh, c.gw);
if (c.initial) panel.setMask(new Uint8Array(Buffer.from(c.initial, "base64")));
const snapshot = () => ({
  weights: Array.from(panel.weights),
  pixels: panel.maskPixels,
  mask: Buffer.from(panel.mask.buffer, panel.mask.byteOffset, panel.mask.byteLength).toString("base64"),
});
const out = [snapshot()];
for (const s of c.strokes) {
  panel.endStroke(); // a new stroke (what pointerdown does)
  for (const [x, y] of s.points) panel.strokeTo(x, y, s.r, s.erase);
  out.push(snapshot());
}
process.stdout.write(JSON.stringify(out));
