#!/usr/bin/env bash
# Install the Debian packages the tests need when they are missing: chromium (Playwright drives
# /usr/bin/chromium: it cannot download browsers here) and nodejs (runs the widgets' JavaScript maths in the
# parity test). Needs root, as on CI and the developers' machines.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing ${missing[*]} and this is not root: apt-get install ${missing[*]} (needed by the tests)" >&2
  exit 1
fi
echo "installing ${missing[*]} (test dependencies) ..." >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
