#!/usr/bin/env bash
# Install Debian's Chromium for the real-browser tests if it is missing (Playwright cannot download browsers
# here; the tests drive /usr/bin/chromium). Needs root, as on CI and the developers' machines.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is missing and this is not root: install it (apt-get install chromium) for the browser tests" >&2
  exit 1
fi
echo "installing chromium (browser tests) ..." >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
