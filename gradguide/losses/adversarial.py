"""Relativistic average GAN losses (Eq. 5, 6, 8, 9), BCE with logits (autocast-safe)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import REDUCTIONS, Reduction, _check_choice, _check_weight, _reduce
from ..registry import LossEntry

__all__ = ["ragan_d_loss", "ragan_g_loss", "RaGANLoss"]


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none")


def _ragan_pair(real: Tensor, fake: Tensor, real_target: float, reduction: str) -> Tensor:
    if not isinstance(real, Tensor) or not isinstance(fake, Tensor):
        raise TypeError("ragan: real and fake logits must be tensors")
    if real.ndim == 0 or fake.ndim == 0 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"ragan: real logits {tuple(real.shape)} and fake logits {tuple(fake.shape)} must be (B, ...) of equal per-sample shape")
    _check_choice(reduction, REDUCTIONS, "ragan: reduction")
    real = real.float()
    fake = fake.float()
    l_real = _bce(real - fake.mean(), real_target)
    l_fake = _bce(fake - real.mean(), 1.0 - real_target)
    if reduction == "none":
        if real.shape != fake.shape:
            raise ValueError("ragan: reduction='none' needs real and fake logits of the same shape")
        return (l_real + l_fake) / 2
    return (_reduce(l_real, reduction) + _reduce(l_fake, reduction)) / 2


def ragan_d_loss(real_logits: Tensor, fake_logits: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Relativistic average GAN loss of the discriminator (ESRGAN, BCE with logits).

    ``(BCE(D(real) - mean D(fake), 1) + BCE(D(fake) - mean D(real), 0)) / 2``.

    Args:
        real_logits, fake_logits: raw discriminator outputs, ``(B, ...)`` (``(B, 1)`` for
            the VGG discriminator, ``(B, 1, H, W)`` per-pixel for the U-Net); the means
            run over all elements. Upcast to float32.
        reduction: ``"mean"``/``"sum"`` of each BCE term, or ``"none"`` (elementwise).
    """
    return _ragan_pair(real_logits, fake_logits, 1.0, reduction)


def ragan_g_loss(real_logits: Tensor, fake_logits: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Relativistic average GAN loss of the generator (Eq. 6 / Eq. 9 as RaGAN):
    ``(BCE(D(real) - mean D(fake), 0) + BCE(D(fake) - mean D(real), 1)) / 2``.

    Pass ``real_logits`` detached (the generator step does not train D)."""
    return _ragan_pair(real_logits, fake_logits, 0.0, reduction)


class RaGANLoss(nn.Module):
    """Module twin of :func:`ragan_d_loss` / :func:`ragan_g_loss`, for images and
    gradient maps alike.

    ``forward(real_logits, fake_logits, *, for_discriminator)`` returns
    ``weight * ragan_d_loss(...)`` or ``weight * ragan_g_loss(...)``.
    """

    def __init__(self, *, weight: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.weight = _check_weight(weight, "RaGANLoss")
        self.reduction = _check_choice(reduction, REDUCTIONS, "RaGANLoss: reduction")

    def forward(self, real_logits: Tensor, fake_logits: Tensor, *, for_discriminator: bool) -> Tensor:
        fn = ragan_d_loss if for_discriminator else ragan_g_loss
        return self.weight * fn(real_logits, fake_logits, reduction=self.reduction)

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return self(real_logits, fake_logits, for_discriminator=True)

    def g_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return self(real_logits, fake_logits, for_discriminator=False)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, reduction={self.reduction!r}"


LOSSES = [
    LossEntry("ragan", RaGANLoss, "relativistic average GAN, BCE with logits (Eq. 5, 6, 8, 9)"),
]
