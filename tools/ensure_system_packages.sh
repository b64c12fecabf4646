#!/usr/bin/env bash
# Install the Debian packages the checks need when they are missing: nodejs and npm (build, lint and test the
# widgets' JavaScript: make lint, the node parity and unit tests) and, unless --js is given, chromium (Playwright
# drives /usr/bin/chromium: it cannot download browsers here) and dataset-fashion-mnist (the labelled images of
# the training study, read offline from /usr/share/datasets/fashion-mnist). Needs root, as on CI and the
# developers' machines.
set -euo pipefail
missing=()
[ "${1:-}" = --js ] || [ -x /usr/bin/chromium ] || missing+=(chromium)
[ "${1:-}" = --js ] || [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing ${missing[*]} and this is not root: apt-get install ${missing[*]} (needed by the checks)" >&2
  exit 1
fi
echo "installing ${missing[*]} (check dependencies) ..." >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
