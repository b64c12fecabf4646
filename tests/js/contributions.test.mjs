// Unit tests of js/lib/contributions.js (node --test): a payload decoded as P or as its factors gives the same maps.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodePayload } from "../../simvis_widgets/widgets/js/lib/contributions.js";

const f32 = (values) => new DataView(new Float32Array(values).buffer);
// Q_A (2 cells x D=2), Q_B (3 cells x 2), scale 2: P = 2 Q_A Q_B^T
const QA = [1, 0, 0.5, -1];
const QB = [1, 2, 0, 1, -1, 0.5];
const P = [2, 0, -2, -3, -2, -2]; // 2 x 3, row-major
const common = { grid_a: [1, 2], grid_b: [3, 1], map_a: f32([0, 0]), map_b: f32([1, 2, 3]) };

const pairwise = {
  ...common,
  matrix_kind: "pairwise",
  matrix_dtype: "float32",
  pairwise: f32(P.map((v) => v / 3)),
  matrix_scale: 3,
};
const factors = {
  ...common,
  matrix_kind: "factors",
  matrix_dtype: "float32",
  shares_a: f32(QA),
  shares_b: f32(QB),
  factor_dim: 2,
  scale: 2,
};

for (const [name, payload] of [
  ["pairwise", pairwise],
  ["factors", factors],
]) {
  test(`${name}: rows, columns and weighted sums of P`, () => {
    const { contrib, mapA, mapB } = decodePayload(payload);
    const near = (got, expected) =>
      expected.forEach((v, k) => assert.ok(Math.abs(got[k] - v) < 1e-6, `${got} vs ${expected}`));
    near(contrib.point("a", 1), [-3, -2, -2]); // row 1 of P, over B
    near(contrib.point("b", 2), [-2, -2]); // column 2, over A
    near(contrib.weighted("a", [0.5, 1]), [-2, -2, -3]);
    near(contrib.weighted("b", [1, 0, 0.25]), [1.5, -3.5]);
    assert.deepEqual([...mapA, ...mapB], [0, 0, 1, 2, 3]);
  });
}
