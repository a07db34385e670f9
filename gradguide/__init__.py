"""gradguide: gradient guidance (SPSR, CVPR 2020) for any PyTorch super-resolution network."""
from __future__ import annotations

from .checkpoints import load, load_checkpoint, save
from .ops import GradientMap, gradient_map
from .spec import GuidanceSpec, Tap
from .spsr import create_spsr
from .types import SROutput

# Bound after the submodule import on purpose: `gradguide.wrap` is the function, not the
# module gradguide/wrap.py (import that one as `from gradguide.wrap import ...`).
from .wrap import GuidedSR, unwrap, wrap  # noqa: E402  isort: skip

__version__ = "0.1.0"

__all__ = [
    "__version__", "gradient_map", "GradientMap", "SROutput",
    "load", "save", "load_checkpoint", "wrap", "unwrap", "GuidedSR", "create_spsr", "GuidanceSpec", "Tap",
    "evaluate", "upscale",
]


def __getattr__(name: str):  # evaluation and inference pull in more: load them on first use
    if name == "evaluate":
        from .eval.evaluate import evaluate

        return evaluate
    if name == "upscale":
        from .infer.upscale import upscale

        return upscale
    raise AttributeError(f"module 'gradguide' has no attribute {name!r}")
