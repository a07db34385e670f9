"""Training state on disk: atomic writes and loads that never unpickle arbitrary objects.

The state file (``state.pt``) holds everything needed to continue a run exactly: G,
both discriminators, every optimizer and scheduler, the GradScaler, the EMA of G, the
iteration, the sampler's epoch/position and the python/numpy/torch RNG states. It is
written with :func:`torch.save` into a temporary file in the same folder, flushed and
``fsync``-ed, then moved over the old file with :func:`os.replace` (atomic on POSIX),
and the folder is ``fsync``-ed so the rename itself is durable. A crash (even SIGKILL)
during the write leaves the previous state file intact. The state before the latest is
kept as ``state.prev.pt``: ``--resume`` falls back to it (and says so) when the latest
cannot be read.

Loading uses ``torch.load(weights_only=True)``: only tensors and plain containers can
come back. RNG states are therefore stored as tensors/ints/lists, never as numpy
objects or tuples holding them.
"""
from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch

from ..errors import CheckpointError
from ..fileio import atomic_write

__all__ = [
    "STATE_VERSION",
    "atomic_write_bytes",
    "atomic_torch_save",
    "load_state_file",
    "load_state_with_fallback",
    "previous_path",
    "state_exists",
    "clean_stale_files",
    "capture_rng_state",
    "restore_rng_state",
]

STATE_VERSION = 1


def atomic_write_bytes(path: Union[str, os.PathLike], write: Callable[[Any], None]) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename
    it to ``path`` and fsync the folder (see :func:`gradguide.fileio.atomic_write`). On any
    error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, write)


def atomic_torch_save(obj: Any, path: Union[str, os.PathLike], *, keep_previous: bool = False) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    With ``keep_previous`` the file being replaced is kept as :func:`previous_path`
    (``state.prev.pt``) first, so that an unreadable latest state can fall back to it."""
    buf = io.BytesIO()
    torch.save(obj, buf)  # serialise fully before touching the disk
    data = buf.getbuffer()
    path = Path(path)
    if keep_previous and path.is_file() and zipfile.is_zipfile(path):  # never keep a truncated one
        _link_or_copy(path, previous_path(path))
    return atomic_write_bytes(path, lambda f: f.write(data))


def previous_path(path: Union[str, os.PathLike]) -> Path:
    """Where the state before the latest is kept: ``state.pt`` -> ``state.prev.pt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (a hard link where the filesystem allows)."""
    import shutil

    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def load_state_with_fallback(path: Union[str, os.PathLike], map_location: Any = "cpu", say: Callable[[str], None] | None = None) -> tuple[dict, Path]:
    """Load ``path``; if it is missing or unreadable, load :func:`previous_path` instead
    and say so. Returns ``(state, the file used)``; raises :class:`CheckpointError` (for
    ``path``) when neither loads."""
    path = Path(path)
    prev = previous_path(path)
    try:
        return load_state_file(path, map_location), path
    except CheckpointError as exc:
        if not prev.is_file():
            raise
        try:
            state = load_state_file(prev, map_location)
        except CheckpointError:
            raise exc from None
        if say is not None:
            say(f"{exc}; using the previous state {prev} (iteration {state.get('iteration')}) instead")
        return state, prev


def state_exists(path: Union[str, os.PathLike]) -> bool:
    """A training state (latest or previous) is in the folder."""
    return Path(path).is_file() or previous_path(path).is_file()


def clean_stale_files(out_dir: Union[str, os.PathLike]) -> list[Path]:
    """Remove the temporary files a killed write left in a run folder: ``.<name>.*.tmp``
    (every atomic write) and ``<name>.safetensors.*.tmp`` (checkpoints written by older
    versions)."""
    from ..fileio import clean_stale_tmp

    d = Path(out_dir)
    removed = clean_stale_tmp(d)
    if d.is_dir():
        for f in d.glob("*.safetensors.*.tmp"):
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
    return removed


def load_state_file(path: Union[str, os.PathLike], map_location: Any = "cpu") -> dict:
    """Load a state file with ``weights_only=True``; a damaged or foreign file raises
    :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: training state not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        from ..fileio import one_line

        raise CheckpointError(f"{path}: cannot load training state ({type(exc).__name__}: {one_line(str(exc).splitlines()[0] if str(exc) else '', 200)})") from None
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
    """Inverse of :func:`capture_rng_state`. The state may have been loaded with
    ``map_location`` on a GPU (the trainer loads it onto its device): every RNG state is
    brought back to the CPU first, where numpy and ``torch.set_rng_state`` need it."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([c.cpu() for c in cuda])
