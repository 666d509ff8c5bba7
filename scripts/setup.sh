#!/usr/bin/env bash
# Idempotent set-up: system packages (apt, when we can), a virtual environment at .venv,
# torch first (CPU wheel unless a CUDA GPU is present), then the project and its dependencies.
# Usage: scripts/setup.sh [--test]     (--test adds the test tools and the browser for UI tests)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# ---- system packages ----------------------------------------------------------------------
sys_pkgs=(libfluidsynth3 fluid-soundfont-gm ffmpeg)
[ $want_test = 1 ] && sys_pkgs+=(chromium)
missing=()
for p in "${sys_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
    echo "setup: installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages first: ${missing[*]}" >&2
    echo "       e.g.  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# ---- python environment -------------------------------------------------------------------
py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
vpy="$root/.venv/bin/python"

# Re-install only when the dependency spec or this script changed (fast second run).
stamp=".venv/.text2lofi-setup-$want_test"
digest=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  exit 0
fi

"$vpy" -m pip install -q --upgrade pip >/dev/null
if ! "$vpy" -c "import torch" 2>/dev/null; then
  # torch first: a bare 'torch' requirement would pull the newest CUDA build (several GB).
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    "$vpy" -m pip install -q "torch==2.13.0"                     # CUDA build from PyPI
  elif ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
    "$vpy" -m pip install -q /opt/wheels/torch-2.13.0+cpu-*.whl   # the CPU wheel our machines carry
  else
    "$vpy" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
if [ $want_test = 1 ]; then
  "$vpy" -m pip install -q -e ".[test]" --config-settings editable_mode=compat
else
  "$vpy" -m pip install -q -e . --config-settings editable_mode=compat
fi
# The CPU token step in C (rwkv_core/cpu_step.py) is compiled here once, so the first track does not wait for it;
# without a compiler generation steps in numpy instead, and says so.
"$vpy" -c "from rwkv_core.cpu_step import load_library; load_library()" \
  || echo "setup: the C token step did not build; generation will step in numpy (about 1.5x slower)" >&2
echo "$digest" > "$stamp"
echo "setup: done (.venv)"
