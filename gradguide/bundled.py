"""Models that ship inside the package, so that ``gradguide upscale IMAGE -o OUT`` and
``gradguide.load("default")`` work right after install, offline, with no download.

=============  ===========================  ==================================================
name           file (``gradguide/weights``)  what
=============  ===========================  ==================================================
``default``    ``default_x4.safetensors``    x4, RRDBNet nf64/nb8 + gradient guidance (lr),
                                             PSNR-oriented; card: docs/model-default.md
=============  ===========================  ==================================================

A name is used only where no file of that name exists, so a local file called
``default`` still wins. Each file is an ordinary gradguide safetensors checkpoint (fp16
storage; :func:`gradguide.load` builds the model from its metadata).
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .errors import CheckpointError

__all__ = ["BundledModel", "BUNDLED", "WEIGHTS_DIR", "bundled_model", "resolve_checkpoint", "DEFAULT_MODEL"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class BundledModel:
    name: str
    file: str
    summary: str
    card: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


BUNDLED: tuple[BundledModel, ...] = (
    BundledModel(
        "default", "default_x4.safetensors",
        "x4 RRDBNet (nf64, nb8) + gradient guidance (lr fusion), PSNR-oriented, trained on SunHays80",
        "docs/model-default.md",
    ),
)
#: the model ``gradguide upscale`` uses when none is given
DEFAULT_MODEL = "default"


def bundled_model(name: str) -> BundledModel:
    """The bundled model called ``name``; :class:`CheckpointError` (with a suggestion) if none is."""
    for m in BUNDLED:
        if m.name == name:
            if not m.path.is_file():
                raise CheckpointError(f"bundled model {name!r}: {m.path} is missing from this installation (reinstall gradguide)")
            return m
    close = difflib.get_close_matches(name, [m.name for m in BUNDLED], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise CheckpointError(f"{name}: no such file, and no bundled model of that name{hint} (bundled: {', '.join(m.name for m in BUNDLED)})")


def resolve_checkpoint(path: Union[str, os.PathLike]) -> Path:
    """``path`` itself when it exists or looks like a path; the bundled file when it is a
    bundled model's name (``"default"``)."""
    p = Path(path)
    if p.exists() or isinstance(path, os.PathLike) or os.sep in str(path) or p.suffix:
        return p
    names = {m.name for m in BUNDLED}
    if str(path) in names:
        return bundled_model(str(path)).path
    return p
