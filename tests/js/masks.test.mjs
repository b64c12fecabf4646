// Unit tests of js/lib/masks.js (node --test): exact cell weights, the brush, boxes and mask traits.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  CellMask,
  axisOverlaps,
  boxMask,
  cellWeights,
  maskFromTrait,
} from "../../simvis_widgets/widgets/js/lib/masks.js";

const close = (got, expected, what) =>
  expected.forEach((v, k) => assert.ok(Math.abs(got[k] - v) < 1e-5, `${what}[${k}]: ${got[k]} vs ${v}`));

test("axisOverlaps splits straddling pixels between cells; each cell's fractions add up to 1", () => {
  const parts = axisOverlaps(5, 2); // cells of 2.5 px: pixel 2 straddles both
  assert.deepEqual(parts[2], [
    [0, 0.2],
    [1, 0.2],
  ]);
  assert.deepEqual(parts[0], [[0, 0.4]]);
  const total = [0, 0];
  for (const p of parts) for (const [c, f] of p) total[c] += f;
  close(total, [1, 1], "total");
});

test("cellWeights: the covered fraction of each cell, partial values counting their share", () => {
  const H = 4,
    W = 6; // cells of 2 x 3 px on a 2 x 2 grid
  const mask = new Uint8Array(H * W);
  mask.fill(255, 0, 3); // the top row of cell (0, 0): half of it
  mask[3 * W + 5] = 51; // one pixel of cell (1, 1) at 0.2
  close(cellWeights(mask, H, W, 2, 2), [0.5, 0, 0, 0.2 / 6], "weights");
});

test("CellMask.stamp paints exactly the pixels whose centres lie in the disc, erase undoes it", () => {
  const changed = [];
  const m = new CellMask(9, 11, 3, 4, (k, v) => changed.push([k, v]));
  m.stamp(5, 4, 2, false);
  const inside = [];
  for (let y = 0; y < 9; y++)
    for (let x = 0; x < 11; x++) if ((x + 0.5 - 5) ** 2 + (y + 0.5 - 4) ** 2 <= 4) inside.push(y * 11 + x);
  assert.deepEqual(
    [...m.mask.keys()].filter((k) => m.mask[k]),
    inside,
  );
  assert.deepEqual(
    changed,
    inside.map((k) => [k, 255]),
  );
  assert.equal(m.pixels, inside.length);
  close(m.weights, cellWeights(m.mask, 9, 11, 3, 4), "weights after painting");
  m.stamp(5, 4, 2, false); // painting painted pixels changes nothing
  assert.equal(changed.length, inside.length);
  m.stamp(5, 4, 3, true);
  assert.equal(m.pixels, 0);
  close(m.weights, new Array(12).fill(0), "weights after erasing");
  assert.equal(m.toTrait(), null);
});

test("CellMask.strokeTo stamps along the way; a new stroke starts where it is put down", () => {
  const m = new CellMask(10, 40, 2, 4);
  m.strokeTo(2, 5, 3, false);
  m.strokeTo(38, 5, 3, false); // a gap-free line: every pixel of row 5 between the ends
  for (let x = 2; x < 38; x++) assert.equal(m.mask[5 * 40 + x], 255, `pixel ${x} of the stroke`);
  m.lastPoint = null;
  m.strokeTo(20, 9, 1, true); // a new stroke: one stamp, no line back to (38, 5)
  assert.equal(m.mask[5 * 40 + 30], 255);
  assert.equal(m.mask[9 * 40 + 20], 0);
  close(m.weights, cellWeights(m.mask, 10, 40, 2, 4), "weights");
});

test("boxMask fills between two corners in any order, clipped to the image", () => {
  const box = boxMask(4, 5, 3.5, 0.2, 1, 9);
  const rows = [];
  for (let y = 0; y < 4; y++) rows.push([...box.subarray(5 * y, 5 * y + 5)].map((v) => (v ? 1 : 0)).join(""));
  assert.deepEqual(rows, ["01110", "01110", "01110", "01110"]);
});

test("mask traits: a copy at the panel's size, else null; an empty mask sends null", () => {
  const data = new Uint8Array([0, 255, 255, 0, 0, 255]);
  const pixels = maskFromTrait({ shape: [2, 3], data: new DataView(data.buffer) }, 2, 3);
  assert.deepEqual([...pixels], [...data]);
  pixels[0] = 1;
  assert.equal(data[0], 0, "a copy");
  assert.equal(maskFromTrait({ shape: [3, 2], data: new DataView(data.buffer) }, 2, 3), null);
  assert.equal(maskFromTrait(null, 2, 3), null);
  const m = new CellMask(2, 3, 1, 1);
  m.set(new Uint8Array(data));
  const trait = m.toTrait();
  assert.deepEqual(trait.shape, [2, 3]);
  assert.deepEqual([...new Uint8Array(trait.data.buffer)], [...data]);
  assert.notEqual(trait.data.buffer, m.mask.buffer, "the trait holds a copy");
});
