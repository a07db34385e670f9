"""Pixelwise distances (Eq. 3): L1, MSE, Charbonnier; function and module twin."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import CRITERIA, REDUCTIONS, Criterion, Reduction, _check_choice, _check_pair, _check_weight, _reduce
from ..registry import LossEntry

__all__ = ["charbonnier_loss", "pixel_loss", "PixelLoss"]


def charbonnier_loss(input: Tensor, target: Tensor, *, eps: float = 1e-3, reduction: Reduction = "mean") -> Tensor:
    """Charbonnier (smooth L1) distance ``sqrt((x - y)^2 + eps^2) - eps``.

    The constant ``eps`` is subtracted so that identical inputs give exactly 0; the
    gradient is the usual Charbonnier gradient ``(x - y) / sqrt((x - y)^2 + eps^2)``.

    Shapes: ``input`` and ``target`` any equal shape; returns a scalar for
    ``mean``/``sum`` and the elementwise tensor for ``none``.
    """
    _check_pair(input, target, "charbonnier_loss")
    d = input.float() - target.float()
    e = float(eps)
    return _reduce(torch.sqrt(d * d + e * e) - e, reduction)


def pixel_loss(
    input: Tensor,
    target: Tensor,
    *,
    criterion: Criterion = "l1",
    reduction: Reduction = "mean",
    eps: float = 1e-3,
) -> Tensor:
    """Pixelwise distance (Eq. 3 with ``l1``): L1, MSE or Charbonnier.

    Args:
        input, target: tensors of equal shape, e.g. ``(B, C, H, W)`` images.
        criterion: ``"l1"`` (paper), ``"mse"`` or ``"charbonnier"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (elementwise).
        eps: Charbonnier's epsilon (ignored otherwise).
    """
    _check_pair(input, target, "pixel_loss")
    _check_choice(criterion, CRITERIA, "pixel_loss: criterion")
    _check_choice(reduction, REDUCTIONS, "pixel_loss: reduction")
    if criterion == "charbonnier":
        return charbonnier_loss(input, target, eps=eps, reduction=reduction)
    fn = F.l1_loss if criterion == "l1" else F.mse_loss
    return fn(input.float(), target.float(), reduction=reduction)


class PixelLoss(nn.Module):
    """Module twin of :func:`pixel_loss`: ``weight * pixel_loss(input, target)``."""

    def __init__(self, criterion: Criterion = "l1", *, weight: float = 1.0, reduction: Reduction = "mean", eps: float = 1e-3) -> None:
        super().__init__()
        self.criterion = _check_choice(criterion, CRITERIA, "PixelLoss: criterion")
        self.reduction = _check_choice(reduction, REDUCTIONS, "PixelLoss: reduction")
        self.weight = _check_weight(weight, "PixelLoss")
        self.eps = float(eps)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return self.weight * pixel_loss(input, target, criterion=self.criterion, reduction=self.reduction, eps=self.eps)

    def extra_repr(self) -> str:
        return f"criterion={self.criterion!r}, weight={self.weight}, reduction={self.reduction!r}"


LOSSES = [
    LossEntry("pixel", PixelLoss, "pixelwise L1 / MSE / Charbonnier (Eq. 3)"),
]
