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
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi

if [[ -n "${GPU_CHECK_SHIM:-}" ]] || ! "$PY" -c "import gradguide_backbones, gradguide.recipes" >/dev/null 2>&1; then
    SHIM="$(mktemp -d)"
    cat > "$SHIM/sitecustomize.py" <<EOF
# written by bench/gpu_check.sh: import gradguide from the source tree without installing it
import importlib.abc, importlib.util, os, sys
_ROOT = "$ROOT"
_MAP = {"gradguide_backbones": os.path.join(_ROOT, "backbones"), "gradguide.recipes": os.path.join(_ROOT, "recipes")}
class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        for pkg, folder in _MAP.items():
            if name == pkg:
                return importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
            if name.startswith(pkg + "."):
                sub = os.path.join(folder, *name[len(pkg) + 1:].split("."))
                if os.path.isdir(sub):
                    return importlib.util.spec_from_file_location(name, os.path.join(sub, "__init__.py"), submodule_search_locations=[sub])
                if os.path.exists(sub + ".py"):
                    return importlib.util.spec_from_file_location(name, sub + ".py")
        return None
sys.meta_path.insert(0, _Finder())
EOF
    export PYTHONPATH="$SHIM:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" "$ROOT/bench/gpu_check.py" "$@"
