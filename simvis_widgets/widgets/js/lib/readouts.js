// Numbers behind the readouts (no DOM).

export const fmt = (v, digits = 4) => (v >= 0 ? "+" : "") + v.toFixed(digits);
export const pct = (part, whole) => (whole ? `${((100 * part) / whole).toFixed(1)} %` : "n/a");

/** Index of the largest value (the first one on ties). */
export function argmax(values) {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k] > values[best]) best = k;
  return best;
}

/** The largest magnitude over the given arrays (null ones skipped), or 1 when it is 0: a colour scale's end. */
export function maxAbs(...arrays) {
  let v = 0;
  for (const a of arrays) if (a) for (let k = 0; k < a.length; k++) v = Math.max(v, Math.abs(a[k]));
  return v > 0 ? v : 1;
}

export function sum(values) {
  let s = 0;
  for (let k = 0; k < values.length; k++) s += values[k];
  return s;
}

/** A region's exact score: its cell weights times the image's own map, summed. */
export function regionScore(weights, map) {
  let s = 0;
  for (let k = 0; k < map.length; k++) s += weights[k] * map[k];
  return s;
}

/** The best-matching cell of a map over a grid `gw` cells wide: {index, rc: [row, col]}. */
export function bestCell(values, gw) {
  const index = argmax(values);
  return { index, rc: [Math.floor(index / gw), index % gw] };
}
