# Sourced by the device scripts (bench/gpu_check.sh, bench/device_study.sh): sets PY and,
# when gradguide is not installed (a bare machine with only torch and the usual scientific
# stack), puts a sitecustomize.py on PYTHONPATH that maps `gradguide_backbones` and
# `gradguide.recipes` to backbones/ and recipes/ of this tree. Needs ROOT set.
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi

if [[ -n "${GPU_CHECK_SHIM:-}" ]] || ! "$PY" -c "import gradguide_backbones, gradguide.recipes" >/dev/null 2>&1; then
    SHIM="$(mktemp -d)"
    cat > "$SHIM/sitecustomize.py" <<PYEOF
# written by bench/srcpath.sh: import gradguide from the source tree without installing it
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
PYEOF
    export PYTHONPATH="$SHIM:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
