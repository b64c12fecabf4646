# Two entry points; each creates/updates its own environment (tools/venv.sh).
SHELL := /bin/bash
PORT ?= 8888

.PHONY: demo docs lint test venv

venv:
	@tools/venv.sh >/dev/null

## Open the quickstart notebook in JupyterLab on the embedded EfficientNet-Lite0 (offline).
## The URL JupyterLab prints (and the browser it opens) lands on the notebook itself: notebooks/ is the root
## and /lab/tree/01_quickstart.ipynb the default URL (a notebook path argument would only steer the browser).
demo:
	@venv=$$(tools/venv.sh) && \
	  "$$venv/bin/jupyter" lab --ServerApp.root_dir=notebooks --LabApp.default_url=/lab/tree/01_quickstart.ipynb \
	    --ip=127.0.0.1 --port=$(PORT) $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(JUPYTER_ARGS)

## Build the documentation site offline into site/ (then open site/index.html): executes the notebooks, writes each
## explorer they show as its self-contained export next to the page, then mkdocs build --strict (tools/build_docs.py).
docs:
	@venv=$$(tools/venv.sh) && "$$venv/bin/python" tools/build_docs.py

## Lint and type-check: ruff (lint, including private members of other modules' objects, and format) and mypy;
## then the JavaScript: ESLint and Prettier (tooling from package-lock.json; npm ci only when it changed).
## Whether the committed bundles (simvis_widgets/widgets/static/) are fresh is a test: tests/test_js_build.py.
lint:
	@venv=$$(tools/venv.sh) && \
	  "$$venv/bin/ruff" check . && "$$venv/bin/ruff" format --check . && "$$venv/bin/mypy"
	@tools/node_modules.sh
	@npx --no-install eslint . && npx --no-install prettier --check --log-level=warn "**/*.{js,mjs}"

## Run every check: the linters, then unit, property, session, widget, CLI, notebook and real-browser tests.
test: lint
	@tools/ensure_system_packages.sh
	@venv=$$(tools/venv.sh) && \
	  "$$venv/bin/python" -m pytest --nbmake --nbmake-timeout=900 tests notebooks $(PYTEST_ARGS)
