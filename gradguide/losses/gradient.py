"""Gradient-space losses: ``|| M(SR) - M(HR) ||`` (Eq. 7) and the gradient branch's
``|| grad - M(HR) ||`` (L_GB)."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ..ops import PADDINGS, gradient_map
from ._common import CRITERIA, REDUCTIONS, Criterion, Reduction, _check_choice, _check_image, _check_pair, _check_weight
from .pixel import pixel_loss
from ..registry import LossEntry

__all__ = ["gradient_pixel_loss", "GradientPixelLoss", "branch_loss", "BranchLoss"]


def gradient_pixel_loss(
    sr: Tensor,
    hr: Tensor,
    *,
    criterion: Criterion = "l1",
    padding: str = "zeros",
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> Tensor:
    """Gradient pixel loss ``|| M(sr) - M(hr) ||`` (Eq. 7).

    Args:
        sr, hr: ``(B, C, H, W)`` images.
        criterion: ``"l1"`` as in the paper; ``"mse"`` as in the official code.
        padding: padding of :func:`gradguide.ops.gradient_map`; the official code uses
            ``"official_loss"`` (pad 2, maps 2 px larger).
        eps: the operator's epsilon.
    """
    _check_image(sr, "gradient_pixel_loss", "sr")
    _check_pair(sr, hr, "gradient_pixel_loss", "sr", "hr")
    g_sr = gradient_map(sr.float(), padding=padding, eps=eps)
    g_hr = gradient_map(hr.float(), padding=padding, eps=eps)
    return pixel_loss(g_sr, g_hr, criterion=criterion, reduction=reduction)


class _GradientMapLoss(nn.Module):
    """Shared constructor of the two gradient-map losses' module twins."""

    def __init__(
        self,
        criterion: Criterion = "l1",
        *,
        padding: str = "zeros",
        eps: float = 1e-6,
        weight: float = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.criterion = _check_choice(criterion, CRITERIA, f"{name}: criterion")
        self.padding = _check_choice(padding, PADDINGS, f"{name}: padding")
        self.eps = float(eps)
        self.weight = _check_weight(weight, name)
        self.reduction = _check_choice(reduction, REDUCTIONS, f"{name}: reduction")

    def _loss(self, fn, a: Tensor, b: Tensor) -> Tensor:
        return self.weight * fn(a, b, criterion=self.criterion, padding=self.padding, eps=self.eps, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"criterion={self.criterion!r}, padding={self.padding!r}, weight={self.weight}, reduction={self.reduction!r}"


class GradientPixelLoss(_GradientMapLoss):
    """Module twin of :func:`gradient_pixel_loss`: ``forward(sr, hr)``."""

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return self._loss(gradient_pixel_loss, sr, hr)


def branch_loss(
    grad: Tensor,
    hr: Tensor,
    *,
    criterion: Criterion = "l1",
    padding: str = "zeros",
    eps: float = 1e-6,
    reduction: Reduction = "mean",
    target: Optional[Tensor] = None,
) -> Tensor:
    """The gradient branch's loss ``|| grad - M(hr) ||`` (L_GB^{Pix_GM} in Eq. 10).

    Args:
        grad: the branch's HR gradient map ``SROutput.grad``, ``(B, C, H, W)``.
        hr: the HR images ``(B, C, H, W)``; ignored when ``target`` is given.
        padding: padding of ``M`` for the target; the generator-side operator zero-pads
            by 1 (``"zeros"``), as in the official code.
        target: a precomputed ``M(hr)`` to reuse.
    """
    _check_image(grad, "branch_loss", "grad")
    if target is None:
        _check_image(hr, "branch_loss", "hr")
        target = gradient_map(hr.float(), padding=padding, eps=eps)
    _check_pair(grad, target, "branch_loss", "grad", "M(hr)")
    return pixel_loss(grad, target.detach(), criterion=criterion, reduction=reduction)


class BranchLoss(_GradientMapLoss):
    """Module twin of :func:`branch_loss`: ``forward(grad, hr)``."""

    def forward(self, grad: Tensor, hr: Tensor) -> Tensor:
        return self._loss(branch_loss, grad, hr)


LOSSES = [
    LossEntry("gradient_pixel", GradientPixelLoss, "|| M(SR) - M(HR) || (Eq. 7)"),
    LossEntry("branch", BranchLoss, "gradient branch output vs M(HR)"),
]
