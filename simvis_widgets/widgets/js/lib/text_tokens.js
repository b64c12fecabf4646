// Passages as token sequences (no DOM): how a passage is cut into token and gap segments for display, spans of
// tokens [start, stop), their 0/1 weights, and a readable ink colour on a shaded token.

/** The display segments of a passage: `{ kind: "token", i, text, special }` for every token, in order, with
 * `{ kind: "gap", text }` for the characters between two tokens (spaces, usually; one space next to a token
 * shown by its display string). A token's text is its
 * character span `offsets[i]` of `text` (code points, as Python counts); special tokens ([CLS], [SEP]), tokens without a span and tokens whose
 * span is out of order or outside the text show their own display string `tokens[i]` instead. */
export function passageSegments(text, tokens, offsets, special) {
  // Offsets count code points (Python's str indices); JavaScript strings index UTF-16 units, which differ from
  // the first character outside the Basic Multilingual Plane (emoji): slice an array of code points instead.
  const chars = Array.from(text);
  const slice = (a, b) => chars.slice(a, b).join("");
  const out = [];
  let end = 0;
  let afterOwn = false; // whether the previous segment is a token shown with its own characters
  for (let i = 0; i < tokens.length; i++) {
    const [s, e] = offsets && offsets[i] ? offsets[i] : [0, 0];
    const own = !special[i] && e > s && s >= end && e <= chars.length;
    if (own) {
      if (s > end) out.push({ kind: "gap", text: slice(end, s) });
      else if (out.length && !afterOwn) out.push({ kind: "gap", text: " " });
      out.push({ kind: "token", i, text: slice(s, e), special: false });
      end = e;
    } else {
      if (out.length) out.push({ kind: "gap", text: " " });
      out.push({ kind: "token", i, text: tokens[i], special: Boolean(special[i]) });
    }
    afterOwn = own;
  }
  return out;
}

/** The span [start, stop) from the token a drag started on (`anchor`) to the one it is over (`focus`). */
export function spanBetween(anchor, focus) {
  return [Math.min(anchor, focus), Math.max(anchor, focus) + 1];
}

/** Whether `span` is a valid [start, stop) of a passage of `n` tokens. */
export function validSpan(span, n) {
  return (
    Array.isArray(span) &&
    span.length === 2 &&
    Number.isInteger(span[0]) &&
    Number.isInteger(span[1]) &&
    span[0] >= 0 &&
    span[0] < span[1] &&
    span[1] <= n
  );
}

/** The 0/1 weights (Float32Array of `n`) of tokens [start, stop): the span as a region of its passage. */
export function spanWeights(n, span) {
  const w = new Float32Array(n);
  for (let k = span[0]; k < span[1]; k++) w[k] = 1;
  return w;
}

/** Black or white, whichever reads better on the background colour [r, g, b] (relative luminance). */
export function inkOn([r, g, b]) {
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 ? "#111" : "#fff";
}
