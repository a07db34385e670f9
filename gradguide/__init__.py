"""gradguide: gradient guidance (SPSR, CVPR 2020) for any PyTorch super-resolution network."""
from __future__ import annotations

from .ops import GradientMap, gradient_map
from .types import SROutput

__version__ = "0.1.0"

__all__ = ["__version__", "gradient_map", "GradientMap", "SROutput"]
