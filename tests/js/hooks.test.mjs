// Unit tests of js/lib/hooks.js (node --test): the views reach the page only when a test asks for them.
import assert from "node:assert/strict";
import { test } from "node:test";
import { exposeView, tracing } from "../../simvis_widgets/widgets/js/lib/hooks.js";

for (const flag of [null, "__SIMVIS_TEST_HOOKS__", "__SIMVIS_TRACE__"]) {
  test(`view on the root element with ${flag ?? "no flag"}`, () => {
    if (flag) globalThis[flag] = true;
    try {
      const root = {};
      const view = {};
      const undo = exposeView(root, view);
      assert.equal(root.__simvis, flag ? view : undefined);
      assert.equal(tracing(), flag === "__SIMVIS_TRACE__");
      undo();
      assert.ok(!root.__simvis);
    } finally {
      if (flag) delete globalThis[flag];
    }
  });
}
