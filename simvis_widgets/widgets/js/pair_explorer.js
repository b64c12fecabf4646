// PairExplorer front end: two linked image canvases (lib/pair_view.js).
import "./widget.css";
import { decodePayload } from "./lib/contributions.js";
import { exposeView } from "./lib/hooks.js";
import { Panel } from "./lib/panel.js";
import { PairView, bindPairModel } from "./lib/pair_view.js";

// The shared code this bundle runs, exported so the node tests drive the built file (tests/test_js_maths.py).
export { decodeFloats } from "./lib/bytes.js";
export { cellWeights } from "./lib/masks.js";
export { Panel, decodePayload };

function render({ model, el: root }) {
  const view = new PairView(model, root);
  const hide = exposeView(root, view);
  bindPairModel(model, view);
  return hide;
}

export default { render };
