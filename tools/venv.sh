#!/usr/bin/env bash
# Create (once) and print the path of the project's virtual environment.
#
# The environment is cached outside the checkout, keyed by a hash of pyproject.toml and this script, so a
# fresh clone with the same dependency spec reuses it (saves ~80 s); the package itself is re-pointed at
# the current checkout (editable, no dependencies) on every call. Set SIMVIS_VENV_DIR to move the cache.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
key=$(cat "$root/pyproject.toml" "$root/tools/venv.sh" | sha256sum | cut -c1-16)
base=${SIMVIS_VENV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/simvis-widgets}
venv=$base/venv-$key
mkdir -p "$base"
quiet_pip() { grep -v -e "is ignored: it is neither a file nor a directory" -e "^ *$" || true; }

exec 9>"$base/.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "setting up $venv (first run only, ~2 min)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # torch + torchvision first, as a matching pair: torchvision only imports with the torch it was built for.
  case "$(uname -m)" in
    aarch64|arm64) torch_pins="torch==2.9.1 torchvision==0.24.1" ;;
    *) torch_pins="torch==2.14.1 torchvision==0.29.1" ;;
  esac
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $torch_pins 2>&1 | quiet_pip >&2
  "$venv/bin/pip" install -q -e "$root[test]" 2>&1 | quiet_pip >&2
  touch "$venv/.complete"
fi
if [ "$(cat "$venv/.checkout" 2>/dev/null)" != "$root" ]; then
  "$venv/bin/pip" install -q --no-deps -e "$root" 2>&1 | quiet_pip >&2
  echo "$root" > "$venv/.checkout"
fi
echo "$venv"
