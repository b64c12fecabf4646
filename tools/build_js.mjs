// Bundle the widgets' front end with esbuild: each entry module simvis_widgets/widgets/js/<widget>.js (with the
// shared modules of js/lib/ and the CSS it imports) becomes static/<widget>.js (ES module) and static/<widget>.css,
// the files the Python widgets load. The output depends only on the sources and the pinned esbuild version, and is
// committed (installs need no Node); tests/test_js_build.py fails when it is stale.
// usage: node tools/build_js.mjs [--watch] [OUTDIR]   (default OUTDIR: simvis_widgets/widgets/static)
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";

export const WIDGETS = ["pair_explorer", "compare_explorer", "explorer", "text_explorer", "triplet_explorer"];
const root = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const watch = args.includes("--watch");
const outdir = args.find((a) => a !== "--watch") ?? "simvis_widgets/widgets/static";

const options = {
  absWorkingDir: root, // paths in the output's comments are relative to the repository, wherever this runs
  entryPoints: WIDGETS.map((w) => `simvis_widgets/widgets/js/${w}.js`),
  outdir,
  bundle: true,
  format: "esm",
  target: "es2020",
  charset: "utf8",
  logLevel: "warning",
};

if (watch) {
  await (await esbuild.context({ ...options, logLevel: "info" })).watch();
} else {
  await esbuild.build(options);
}
