"""gradguide: gradient guidance (SPSR, CVPR 2020) for any PyTorch super-resolution network."""
from __future__ import annotations

from .ops import GradientMap, gradient_map
from .types import SROutput

__version__ = "0.1.0"

__all__ = [
    "__version__", "gradient_map", "GradientMap", "SROutput",
    "load", "save", "load_checkpoint", "wrap", "unwrap", "GuidedSR", "create_spsr", "GuidanceSpec", "Tap",
    "evaluate", "upscale",
]


def __getattr__(name: str):  # lazy: keep `import gradguide` cheap
    if name == "evaluate":
        from .eval.evaluate import evaluate

        return evaluate
    if name == "upscale":
        from .infer.upscale import upscale

        return upscale
    if name in ("load", "save", "load_checkpoint"):
        from . import checkpoints

        return getattr(checkpoints, name)
    if name in ("wrap", "unwrap", "GuidedSR"):
        from . import wrap as _wrap

        return getattr(_wrap, name)
    if name == "create_spsr":
        from .spsr import create_spsr

        return create_spsr
    if name in ("GuidanceSpec", "Tap"):
        from . import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'gradguide' has no attribute {name!r}")
