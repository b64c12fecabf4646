// Runs the browser maths of a built widget bundle in node on a case written by tests/test_pair_explorer.py: the
// pair's payload decoded as the widgets decode it (decodePayload), then hover rows / columns and painted regions.
// usage: node parity.mjs BUNDLE CASE.json  -> prints JSON results on stdout
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [modulePath, casePath] = process.argv.slice(2);
const m = await import(pathToFileURL(modulePath).href);
const c = JSON.parse(readFileSync(casePath, "utf8"));
const bytes = (b64) => new Uint8Array(Buffer.from(b64, "base64"));
const payload = { ...c.payload };
for (const key of c.binary) payload[key] = new DataView(bytes(payload[key]).buffer);
const { contrib } = m.decodePayload(payload);
const out = { points: [], regions: [] };
for (const [side, i] of c.points) out.points.push(Array.from(contrib.point(side, i)));
for (const r of c.regions) {
  const w = m.cellWeights(bytes(r.mask), r.H, r.W, r.gh, r.gw);
  out.regions.push({ weights: Array.from(w), map: Array.from(contrib.weighted(r.side, w)) });
}
process.stdout.write(JSON.stringify(out));
