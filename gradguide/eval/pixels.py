"""Pixel conventions every metric shares: MATLAB's uint8 rounding, BT.601 Y, border crop.

The lowest module of :mod:`gradguide.eval` (metrics, NIQE and the feature cache build on it).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["quantize", "rgb_to_y", "crop_border"]


def quantize(x: Tensor) -> Tensor:
    """Images in ``[0, 1]`` -> float64 values in ``0..255`` rounded like ``im2uint8``.

    ``uint8`` input is converted to float64 unchanged.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float64)
    return torch.floor(x.detach().to(torch.float64).clamp(0, 1) * 255.0 + 0.5)


def rgb_to_y(x: Tensor, *, round_y: bool = True) -> Tensor:
    """Y of ITU-R BT.601 as MATLAB ``rgb2ycbcr`` computes it on ``uint8`` images.

    Args:
        x: ``(..., 3, H, W)`` with values in ``0..255`` (see :func:`quantize`).
        round_y: round Y to an integer like MATLAB does for ``uint8`` input.

    Returns:
        ``(..., 1, H, W)`` float64 Y in ``16..235``.
    """
    if x.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: expected 3 channels in dim -3, got shape {tuple(x.shape)}")
    x = x.to(torch.float64)
    coef = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64, device=x.device) / 255.0
    y = 16.0 + (x * coef.view(3, 1, 1)).sum(dim=-3, keepdim=True)
    return torch.floor(y + 0.5) if round_y else y


def crop_border(x: Tensor, crop: int) -> Tensor:
    """Remove ``crop`` pixels from each border of ``(..., H, W)``."""
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    if crop == 0:
        return x
    if x.shape[-1] <= 2 * crop or x.shape[-2] <= 2 * crop:
        raise ValueError(f"crop={crop} leaves nothing of an image of size {tuple(x.shape[-2:])}")
    return x[..., crop:-crop, crop:-crop]
