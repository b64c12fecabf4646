// Unit tests of js/lib/colour.js (node --test): values onto the 256-entry colour table.
import assert from "node:assert/strict";
import { test } from "node:test";
import { colourCells, lutIndex } from "../../simvis_widgets/widgets/js/lib/colour.js";

test("lutIndex puts -vmax, 0 and +vmax on the first, middle and last entries and clips beyond", () => {
  assert.equal(lutIndex(-2, 2), 0);
  assert.equal(lutIndex(0, 2), 128); // 127.5 rounds up
  assert.equal(lutIndex(2, 2), 255);
  assert.equal(lutIndex(1, 2), 191); // 191.25
  assert.equal(lutIndex(-7, 2), 0);
  assert.equal(lutIndex(7, 2), 255);
});

test("colourCells writes each value's table colour, opaque", () => {
  const lut = new Uint8Array(768);
  for (let k = 0; k < 256; k++) lut.set([k, 255 - k, (7 * k) % 256], 3 * k);
  const rgba = colourCells(new Float32Array([-1, 0, 0.5, 3]), 1, lut, new Uint8ClampedArray(16));
  const entry = (t) => [t, 255 - t, (7 * t) % 256, 255];
  assert.deepEqual([...rgba], [...entry(0), ...entry(128), ...entry(191), ...entry(255)]);
});
