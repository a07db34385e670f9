#!/usr/bin/env bash
# Run the benches on CUDA and a short spsr_x4 training (see bench/gpu_check.py).
#
#   bash bench/gpu_check.sh [--dry] [--budget 200] [--out DIR] [--only train_step,upscale]
#
# --dry runs the same code paths on CPU with tiny sizes (CI runs it through
# tests/test_gpu_check.py). Logs and summary.{txt,json} go to --out, else $GPU_CHECK_OUT,
# else $OUT, else ./gpu_check_out. The python is $PYTHON, else .venv/bin/python when
# present, else python3.
#
# gradguide need not be installed: when `gradguide_backbones` / `gradguide.recipes` are
# not importable (a bare machine with only torch and the usual scientific stack), a
# sitecustomize.py on PYTHONPATH maps them to backbones/ and recipes/ of this tree.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/srcpath.sh
source "$ROOT/bench/srcpath.sh"
exec "$PY" "$ROOT/bench/gpu_check.py" "$@"
