// The contribution source of a pair, computed from what the kernel sends once per pair (encoding.matrix_payload):
// the pairwise matrix P (N_A x N_B, row-major, float32 or float16 divided by `matrix_scale`) or, for large grids,
// the projected shares Q_A (N_A x D), Q_B (N_B x D) with P = scale * Q_A Q_B^T. Everything interactive comes
// from it:
//   hover cell i of A  -> row i of P over B        hover cell j of B -> column j of P over A
//   paint a mask on A  -> sum_i w_i P[i, :] over B  (w_i = fraction of cell i covered, exact area)
import { decodeFloats } from "./bytes.js";

/** P itself, or its factors. `side` "a": rows of P (maps over B); "b": columns (maps over A). */
export class Contributions {
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
        const ws = only >= 0 ? (s === only ? 1 : 0) : w[s];
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
    // Factorised: q = sum_s w_s Q_src[s] (D), then out = scale * Q_dst q.
    const { D } = this;
    const src = side === "a" ? this.QA : this.QB;
    const dst = side === "a" ? this.QB : this.QA;
    const q = new Float32Array(D);
    for (let s = 0; s < nSrc; s++) {
      const ws = only >= 0 ? (s === only ? 1 : 0) : w[s];
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
}

/** The traits of one explained pair: the grids and what encoding.matrix_payload sends. */
export const PAYLOAD_KEYS = [
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
  "map_b",
];

/** Decode a pair's payload (an object with the PAYLOAD_KEYS): its Contributions and both maps (float32). */
export function decodePayload(p) {
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
