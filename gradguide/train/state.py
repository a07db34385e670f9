"""Training state on disk: atomic writes and loads that never unpickle arbitrary objects.

The state file (``state.pt``) holds everything needed to continue a run exactly: G,
both discriminators, every optimizer and scheduler, the GradScaler, the EMA of G, the
iteration, the sampler's epoch/position and the python/numpy/torch RNG states. It is
written with :func:`torch.save` into a temporary file in the same folder, flushed and
``fsync``-ed, then moved over the old file with :func:`os.replace` (atomic on POSIX),
and the folder is ``fsync``-ed so the rename itself is durable. A crash (even SIGKILL)
during the write leaves the previous state file intact.

Loading uses ``torch.load(weights_only=True)``: only tensors and plain containers can
come back. RNG states are therefore stored as tensors/ints/lists, never as numpy
objects or tuples holding them.
"""
from __future__ import annotations

import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch

from ..errors import CheckpointError

__all__ = [
    "STATE_VERSION",
    "atomic_write_bytes",
    "atomic_torch_save",
    "load_state_file",
    "capture_rng_state",
    "restore_rng_state",
]

STATE_VERSION = 1


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on dirs
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Union[str, os.PathLike], write: Callable[[Any], None]) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename
    it to ``path`` and fsync the folder. On any error the temporary file is removed and
    ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_torch_save(obj: Any, path: Union[str, os.PathLike]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    buf = io.BytesIO()
    torch.save(obj, buf)  # serialise fully before touching the disk
    data = buf.getbuffer()
    return atomic_write_bytes(path, lambda f: f.write(data))


def load_state_file(path: Union[str, os.PathLike], map_location: Any = "cpu") -> dict:
    """Load a state file with ``weights_only=True``; a damaged or foreign file raises
    :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: training state not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load training state ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict) or state.get("format") != "gradguide-train-state":
        raise CheckpointError(f"{path}: not a gradguide training state")
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {state.get('version')} is not supported (expected {STATE_VERSION})")
    return state


def capture_rng_state() -> dict:
    """python, numpy and torch (CPU and every CUDA device) RNG states as plain data."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    out = {
        "python": {"version": int(py_version), "state": torch.tensor(py_internal, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.uint32).astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = list(torch.cuda.get_rng_state_all())
    return out


def restore_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
