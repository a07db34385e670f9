"""LDL: locally discriminative learning of artifacts (Liang et al., "Details or Artifacts",
CVPR 2022), and gradguide's variant on gradient maps.

GAN-trained SR models produce two kinds of high-frequency content: realistic detail and
artifacts. LDL separates them with the model's own EMA copy, which is more stable: where
the current model's error is larger than the EMA's *and* locally irregular, it is an
artifact and is penalised; elsewhere the map is zero and the GAN may add detail::

    r     = sum_c |HR - SR|            r_ema = sum_c |HR - SR_ema|        (B, 1, H, W)
    M     = var(r) ** (1/5)  *  localvar_7x7(r)      (patch-level x pixel-level)
    M     = 0  where  r < r_ema
    L_LDL = criterion(M * SR, M * HR)                (M without gradient)

``var`` is the unbiased variance over the whole residual of each image, ``localvar`` the
unbiased variance of each ``k x k`` window (reflect padding), as in the authors' code.
Computing the local variance as ``n/(n-1) (E[r^2] - E[r]^2)`` with one average pool
gives the same numbers as unfolding every window, without the ``k^2`` memory.

``domain="gradient"`` (``ldl_gradient``, ours): the same map is computed on SPSR's gradient
maps ``M(.)`` (:func:`gradguide.ops.gradient_map`) of SR, HR and SR_ema, and weights a
pixel loss between ``M(SR)`` and ``M(HR)``. Artifacts are false or broken edges, which is
where gradient maps differ; the structure the gradient branch guides lives there too.

Both are extra :class:`~gradguide.losses.SPSRLoss` terms (``LossEntry(term=True)``): they
take the EMA output as ``ema_sr=`` (``uses_ema = True``), which the trainer computes
without autograd when a term asks for it (``train.ema`` must be > 0).
"""
from __future__ import annotations

from typing import Literal, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import gradient_map
from ..registry import LossEntry
from ..types import SROutput, as_output
from ._common import CRITERIA, Criterion, _check_choice, _check_image, _check_pair, _check_weight
from .pixel import pixel_loss

__all__ = ["local_variance", "artifact_map", "ldl_loss", "LDLLoss", "GradientLDLLoss", "LOSSES"]

Domain = Literal["image", "gradient"]
DOMAINS: tuple[str, ...] = ("image", "gradient")


def local_variance(x: Tensor, kernel_size: int = 7) -> Tensor:
    """Unbiased variance of every ``k x k`` window of ``x`` ``(B, C, H, W)`` (reflect
    padding, same size out): ``n/(n-1) * (mean(x^2) - mean(x)^2)``, clamped at 0."""
    if kernel_size < 2 or kernel_size % 2 == 0:
        raise ValueError(f"local_variance: kernel_size must be odd and >= 3, got {kernel_size}")
    _check_image(x, "local_variance", "x")
    p = kernel_size // 2
    mode = "reflect" if min(x.shape[-2:]) > p else "replicate"
    xp = F.pad(x, (p, p, p, p), mode=mode)
    mean = F.avg_pool2d(xp, kernel_size, stride=1)
    mean_sq = F.avg_pool2d(xp * xp, kernel_size, stride=1)
    n = kernel_size * kernel_size
    return ((mean_sq - mean * mean) * (n / (n - 1))).clamp_min(0)


def artifact_map(sr: Tensor, hr: Tensor, ema_sr: Tensor, *, kernel_size: int = 7, patch_power: float = 0.2) -> Tensor:
    """LDL's refined artifact map ``(B, 1, H, W)`` (no gradient flows through it).

    Args:
        sr: the model's output ``(B, C, H, W)``; hr: the target; ema_sr: the EMA model's
            output on the same input.
        kernel_size: window of the pixel-level local variance (paper: 7).
        patch_power: exponent of the patch-level variance (paper: 1/5).
    """
    _check_pair(sr, hr, "artifact_map", "sr", "hr")
    _check_pair(ema_sr, hr, "artifact_map", "ema_sr", "hr")
    with torch.no_grad():
        hr32 = hr.detach().float()
        r = (hr32 - sr.detach().float()).abs().sum(1, keepdim=True)
        r_ema = (hr32 - ema_sr.detach().float()).abs().sum(1, keepdim=True)
        patch = r.flatten(1).var(dim=1, unbiased=True).clamp_min(0).pow(patch_power).view(-1, 1, 1, 1)
        m = patch * local_variance(r, kernel_size)
        return torch.where(r < r_ema, torch.zeros_like(m), m)


def ldl_loss(
    sr: Tensor,
    hr: Tensor,
    ema_sr: Tensor,
    *,
    domain: Domain = "image",
    kernel_size: int = 7,
    criterion: Criterion = "l1",
    eps: float = 1e-6,
) -> Tensor:
    """The LDL artifact loss ``criterion(M * x(SR), M * x(HR))`` with ``x`` the identity
    (``domain="image"``, the paper) or the gradient map ``M(.)`` of SPSR (``"gradient"``);
    the artifact map is computed in the same domain. Scalar, float32."""
    _check_choice(domain, DOMAINS, "ldl_loss: domain")
    _check_choice(criterion, CRITERIA, "ldl_loss: criterion")
    _check_image(sr, "ldl_loss", "sr")
    sr32, hr32 = sr.float(), hr.detach().float()
    if domain == "gradient":
        sr32 = gradient_map(sr32, eps=eps)
        with torch.no_grad():
            hr32 = gradient_map(hr32, eps=eps)
            ema = gradient_map(ema_sr.detach().float(), eps=eps)
    else:
        ema = ema_sr.detach().float()
    w = artifact_map(sr32, hr32, ema, kernel_size=kernel_size)
    return pixel_loss(w * sr32, w * hr32, criterion=criterion)


class LDLLoss(nn.Module):
    """Module twin of :func:`ldl_loss`, usable as an extra ``SPSRLoss`` term:
    ``forward(out, hr, *, ema_sr)`` returns ``weight * ldl_loss(out.sr, hr, ema_sr)``.

    ``uses_ema = True`` tells the owner (``SPSRLoss``, the trainer) to pass the EMA
    generator's output on the same batch; without it the call is a ``ValueError``.
    """

    uses_ema = True
    default_domain: Domain = "image"

    def __init__(self, *, domain: Optional[Domain] = None, kernel_size: int = 7, criterion: Criterion = "l1",
                 weight: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.domain = _check_choice(domain or self.default_domain, DOMAINS, f"{type(self).__name__}: domain")
        self.criterion = _check_choice(criterion, CRITERIA, f"{type(self).__name__}: criterion")
        if int(kernel_size) != kernel_size or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"{type(self).__name__}: kernel_size must be an odd integer >= 3, got {kernel_size!r}")
        self.kernel_size = int(kernel_size)
        self.weight = _check_weight(weight, type(self).__name__)
        self.eps = float(eps)

    def forward(self, out: Union[SROutput, Tensor], hr: Tensor, *, ema_sr: Optional[Tensor] = None) -> Tensor:
        if ema_sr is None:
            raise ValueError(f"{type(self).__name__}: needs the EMA generator's output (ema_sr=); enable train.ema")
        sr = as_output(out, f"{type(self).__name__}: out").sr
        return self.weight * ldl_loss(sr, hr, ema_sr, domain=self.domain, kernel_size=self.kernel_size,
                                      criterion=self.criterion, eps=self.eps)

    def extra_repr(self) -> str:
        return f"domain={self.domain!r}, kernel_size={self.kernel_size}, criterion={self.criterion!r}, weight={self.weight}"


class GradientLDLLoss(LDLLoss):
    """:class:`LDLLoss` on gradient maps ``M(.)`` (``domain="gradient"``), gradguide's variant."""

    default_domain: Domain = "gradient"


LOSSES = [
    LossEntry("ldl", LDLLoss, "LDL artifact loss (Liang et al. 2022): local-variance artifact map vs the EMA, weighted L1", term=True),
    LossEntry("ldl_gradient", GradientLDLLoss, "LDL on SPSR gradient maps M(.) (gradguide's variant)", term=True),
]
