"""x8 geometric self-ensemble: test-time augmentation over the 8 symmetries of the square.

The model runs on the input rotated by 0, 90, 180 and 270 degrees, each with and without a
horizontal flip; every output is mapped back and the eight are averaged ("+" results of
Timofte et al., CVPR 2016, and EDSR+ of Lim et al., CVPRW 2017). It costs 8 forward
passes and usually gains a few tenths of a dB of PSNR for a PSNR-oriented model.

For a guided model the gradient branch's map and M(LR) are averaged the same way: the
gradient magnitude of Eq. 2 is the same under rotations and flips once mapped back.

    sr = self_ensemble(model, lr)            # function
    net = SelfEnsemble(model)                # module twin: anywhere a model goes
    gradguide upscale photo.jpg -o out/ --self-ensemble
    gradguide eval default --data Set5 --self-ensemble
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..types import SROutput, as_output

__all__ = ["dihedral", "undo_dihedral", "self_ensemble", "SelfEnsemble"]


def dihedral(x: Tensor, k: int) -> Tensor:
    """The ``k``-th symmetry of the square (``0 <= k < 8``) of the last two dims:
    ``k % 4`` quarter turns, then a horizontal flip when ``k >= 4``."""
    if not 0 <= k < 8:
        raise ValueError(f"k must be in 0..7, got {k}")
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def undo_dihedral(y: Tensor, k: int) -> Tensor:
    """The inverse of :func:`dihedral`: ``undo_dihedral(dihedral(x, k), k) == x``."""
    if not 0 <= k < 8:
        raise ValueError(f"k must be in 0..7, got {k}")
    if k >= 4:
        y = torch.flip(y, dims=(-1,))
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


def self_ensemble(model: nn.Module, x: Tensor, *, transforms: int = 8) -> SROutput:
    """Average of ``model`` over the first ``transforms`` symmetries (8: all; 1: the model
    alone), each output mapped back. Returns an :class:`SROutput` (``grad``/``lr_grad``
    ``None`` when the model has none)."""
    _check_transforms(transforms)
    sums: list = [None, None, None]
    for k in range(transforms):
        out = as_output(model(dihedral(x, k)))
        for i, t in enumerate(out):
            if t is not None:
                t = undo_dihedral(t.float(), k)
                sums[i] = t if sums[i] is None else sums[i].add_(t)
    sr, grad, lr_grad = (None if s is None else (s / transforms).to(x.dtype) for s in sums)
    return SROutput(sr, grad, lr_grad)


def _check_transforms(n: int) -> int:
    if not 1 <= n <= 8:
        raise ValueError(f"transforms must be in 1..8, got {n}")
    return n


class SelfEnsemble(nn.Module):
    """Module twin of :func:`self_ensemble`: wraps ``model`` (its parameters and ``scale``
    stay the model's). Shape: ``(B, C, H, W) -> SROutput`` of ``(B, C, sH, sW)``."""

    def __init__(self, model: nn.Module, transforms: int = 8) -> None:
        super().__init__()
        self.model, self.transforms = model, _check_transforms(int(transforms))

    @property
    def scale(self) -> Any:
        return getattr(self.model, "scale", None)

    def forward(self, x: Tensor) -> SROutput:
        return self_ensemble(self.model, x, transforms=self.transforms)
