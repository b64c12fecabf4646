// Test and benchmark hooks, off unless the page asks for them before a widget renders (tests/jupyter_browser.py
// does, with a Playwright init script):
//   globalThis.__SIMVIS_TEST_HOOKS__ = true  -> each view is on its root element as `root.__simvis`
//   globalThis.__SIMVIS_TRACE__ = true       -> the same, and the views record draw timings in `view.trace`

/** Whether the page asked for test hooks. */
export function testHooksEnabled() {
  return Boolean(globalThis.__SIMVIS_TEST_HOOKS__ || globalThis.__SIMVIS_TRACE__);
}

/** Put `view` on `root` as `root.__simvis` when test hooks are on; returns what undoes it (render's cleanup). */
export function exposeView(root, view) {
  if (!testHooksEnabled()) return () => {};
  root.__simvis = view;
  return () => {
    root.__simvis = null;
  };
}

/** Whether draws are traced; read at each draw, so a benchmark may switch it on once the widget is up. */
export function tracing() {
  return Boolean(globalThis.__SIMVIS_TRACE__);
}
