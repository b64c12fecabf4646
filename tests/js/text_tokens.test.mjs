// Unit tests of js/lib/text_tokens.js and colour.js's lutColour (node --test): passages cut into token and gap
// segments, spans [start, stop), their weights, and the ink colour on a shaded token.
import assert from "node:assert/strict";
import { test } from "node:test";
import { lutColour, lutIndex } from "../../simvis_widgets/widgets/js/lib/colour.js";
import {
  inkOn,
  passageSegments,
  spanBetween,
  spanWeights,
  validSpan,
} from "../../simvis_widgets/widgets/js/lib/text_tokens.js";

const TEXT = "Reset my router,  now.";
const TOKENS = ["[CLS]", "reset", "my", "route", "##r", ",", "now", ".", "[SEP]"];
const OFFSETS = [
  [0, 0],
  [0, 5],
  [6, 8],
  [9, 14],
  [14, 15],
  [15, 16],
  [18, 21],
  [21, 22],
  [0, 0],
];
const SPECIAL = [true, false, false, false, false, false, false, false, true];

test("passageSegments shows each token's own characters and keeps the text between tokens as gaps", () => {
  const segs = passageSegments(TEXT, TOKENS, OFFSETS, SPECIAL);
  const tokens = segs.filter((s) => s.kind === "token");
  assert.deepEqual(
    tokens.map((s) => s.i),
    [0, 1, 2, 3, 4, 5, 6, 7, 8],
  );
  assert.deepEqual(
    tokens.map((s) => s.text),
    ["[CLS]", "Reset", "my", "route", "r", ",", "now", ".", "[SEP]"],
  );
  assert.deepEqual(
    tokens.map((s) => s.special),
    [true, false, false, false, false, false, false, false, true],
  );
  // Between the tokens: the text as written (two spaces before "now"), nothing between the pieces of "router".
  const shown = segs.map((s) => s.text).join("");
  assert.equal(shown, "[CLS] Reset my router,  now. [SEP]");
});

test("passageSegments falls back to the display strings when spans are missing or out of order", () => {
  const segs = passageSegments(
    "ab cd",
    ["x", "y", "z"],
    [
      [3, 5],
      [0, 2],
      [9, 12],
    ],
    [false, false, false],
  );
  assert.deepEqual(
    segs.map((s) => [s.kind, s.text]),
    [
      ["gap", "ab "], // the text before the first token, as written
      ["token", "cd"],
      ["gap", " "],
      ["token", "y"],
      ["gap", " "],
      ["token", "z"],
    ],
  );
  assert.deepEqual(
    passageSegments("", ["a"], [], [false]).map((s) => s.text),
    ["a"],
  );
});

test("spanBetween orders a drag either way and includes both ends", () => {
  assert.deepEqual(spanBetween(3, 7), [3, 8]);
  assert.deepEqual(spanBetween(7, 3), [3, 8]);
  assert.deepEqual(spanBetween(4, 4), [4, 5]);
});

test("validSpan accepts exactly the integer spans 0 <= start < stop <= n", () => {
  assert.ok(validSpan([0, 1], 1));
  assert.ok(validSpan([2, 5], 5));
  for (const bad of [null, [], [1], [2, 2], [3, 2], [-1, 2], [0, 6], [0.5, 2], ["0", 2], [0, 1, 2]]) {
    assert.equal(validSpan(bad, 5), false, JSON.stringify(bad));
  }
});

test("spanWeights marks tokens [start, stop) with 1 and the others with 0", () => {
  assert.deepEqual([...spanWeights(6, [1, 4])], [0, 1, 1, 1, 0, 0]);
});

test("lutColour is the table entry lutIndex picks", () => {
  const lut = new Uint8Array(768);
  for (let k = 0; k < 256; k++) lut.set([k, 255 - k, (3 * k) % 256], 3 * k);
  for (const v of [-2, -1, -0.3, 0, 0.3, 1, 2]) {
    const t = lutIndex(v, 1);
    assert.deepEqual(lutColour(v, 1, lut), [t, 255 - t, (3 * t) % 256]);
  }
});

test("inkOn picks dark ink on light backgrounds and white on dark ones", () => {
  assert.equal(inkOn([255, 255, 255]), "#111");
  assert.equal(inkOn([247, 247, 247]), "#111");
  assert.equal(inkOn([103, 0, 31]), "#fff");
  assert.equal(inkOn([5, 48, 97]), "#fff");
});

test("passageSegments counts offsets in code points, as Python does (emoji take two UTF-16 units)", () => {
  const text = "a 🙂 b?c";
  const segs = passageSegments(
    text,
    ["a", "🙂", "b", "?", "c"],
    [
      [0, 1],
      [2, 3],
      [4, 5],
      [5, 6],
      [6, 7],
    ],
    [false, false, false, false, false],
  );
  assert.equal(segs.map((s) => s.text).join(""), text);
  assert.deepEqual(
    segs.filter((s) => s.kind === "token").map((s) => s.text),
    ["a", "🙂", "b", "?", "c"],
  );
});
