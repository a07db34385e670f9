"""Result types shared by every guided generator."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

from torch import Tensor

__all__ = ["SROutput", "as_output"]


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


def as_output(out: Any, what: str = "model") -> SROutput:
    """The one adapter from a model's output to :class:`SROutput`.

    A plain backbone returns a Tensor (``SROutput(sr, None, None)``); a guided one an
    :class:`SROutput`; other tuples/lists take their leading tensors (``(sr,)``,
    ``(sr, grad)``, ``(sr, grad, lr_grad)``). Anything else is a :class:`TypeError` naming
    ``what`` produced it.
    """
    if isinstance(out, SROutput):
        return out
    if isinstance(out, Tensor):
        return SROutput(out, None, None)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        rest = [x if isinstance(x, Tensor) else None for x in list(out[1:3])]
        rest += [None] * (2 - len(rest))
        return SROutput(out[0], rest[0], rest[1])
    raise TypeError(f"{what} output must be a Tensor or SROutput(sr, grad, lr_grad), got {type(out).__name__}")
