"""Result types shared by every guided generator."""
from __future__ import annotations

from typing import NamedTuple, Optional

from torch import Tensor

__all__ = ["SROutput"]


class SROutput(NamedTuple):
    """What a gradient-guided generator returns.

    Attributes:
        sr: the super-resolved image, ``(B, C, sH, sW)``.
        grad: the gradient branch's HR gradient map, ``(B, C, sH, sW)``.
        lr_grad: M(LR), the gradient map of the input, ``(B, C, H, W)``.
    """

    sr: Tensor
    grad: Optional[Tensor]
    lr_grad: Optional[Tensor]
