// ESLint (flat config): the recommended rules on every JavaScript file of the repository; the widgets' sources run
// in the browser, the tests and tools in node. The built bundles (static/) are esbuild's output and site/ is MkDocs', not linted.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["simvis_widgets/widgets/static/", "artifacts/", "mutants/", "build/", "dist/", ".venv/", "site/"] },
  js.configs.recommended,
  { files: ["simvis_widgets/widgets/js/**/*.js"], languageOptions: { globals: globals.browser } },
  { files: ["tests/**/*.mjs", "tools/**/*.mjs", "*.js"], languageOptions: { globals: globals.node } },
];
