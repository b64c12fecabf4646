// Runs the browser maths of pair_explorer.js in node on a case written by tests/test_pair_explorer.py.
// usage: node parity.mjs MODULE_PATH CASE.json  -> prints JSON results on stdout
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [modulePath, casePath] = process.argv.slice(2);
const m = await import(pathToFileURL(modulePath).href);
const c = JSON.parse(readFileSync(casePath, "utf8"));
const bytes = (b64) => new Uint8Array(Buffer.from(b64, "base64"));
const scaled = (values, s) => { for (let k = 0; k < values.length; k++) values[k] *= s; return values; };
const source = c.kind === "pairwise"
  ? new m.Contributions({ nA: c.nA, nB: c.nB, pairwise: scaled(m.decodeFloats(bytes(c.pairwise), c.dtype), c.matrix_scale) })
  : new m.Contributions({ nA: c.nA, nB: c.nB, dim: c.dim, scale: c.scale,
      sharesA: m.decodeFloats(bytes(c.shares_a), c.dtype), sharesB: m.decodeFloats(bytes(c.shares_b), c.dtype) });
const out = { points: [], regions: [] };
for (const [side, i] of c.points) out.points.push(Array.from(source.point(side, i)));
for (const r of c.regions) {
  const mask = bytes(r.mask);
  const w = m.cellWeights(mask, r.H, r.W, r.gh, r.gw);
  out.regions.push({ weights: Array.from(w), map: Array.from(source.weighted(r.side, w)) });
}
process.stdout.write(JSON.stringify(out));
