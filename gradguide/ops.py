"""The gradient-map operator M(I) of SPSR (Eq. 2) as a function and a module twin.

M(I) = sqrt(I_x^2 + I_y^2 + eps) per channel, with central differences
I_x(x, y) = I(x+1, y) - I(x-1, y) and I_y(x, y) = I(x, y+1) - I(x, y-1).

The differences are taken on the whole (B, C, H, W) tensor at once with two
shifted slices of one padded tensor: that is exactly what a [-1, 0, 1]
cross-correlation computes, without a per-channel loop, for any channel count,
dtype and device, and it exports to ONNX as plain Slice/Sub ops.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["gradient_map", "GradientMap", "Padding", "PADDINGS", "symmetric_pad"]

Padding = Literal["zeros", "replicate", "reflect", "official_loss"]
#: ``zeros``: the official SPSR generator (``Get_gradient_nopadding``), same size out.
#: ``replicate`` / ``reflect``: border-aware variants, same size out.
#: ``official_loss``: the official loss-side copy (``Get_gradient``), which zero-pads by
#: 2 and so returns a map 2 px larger in H and W (a quirk kept for exact reproduction).
PADDINGS: tuple[str, ...] = get_args(Padding)


def gradient_map(x: Tensor, *, padding: Padding = "zeros", eps: float = 1e-6) -> Tensor:
    """Per-channel gradient magnitude of an image batch (SPSR Eq. 2).

    Args:
        x: images, shape ``(B, C, H, W)``, any C >= 1, floating dtype.
        padding: border handling, one of :data:`PADDINGS`.
        eps: added under the square root (the official code uses 1e-6), which keeps
            the operator differentiable where both differences are zero.

    Returns:
        ``(B, C, H, W)`` gradient magnitudes (``(B, C, H+2, W+2)`` for ``official_loss``).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"gradient_map: x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"gradient_map: x must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"gradient_map: x must be a floating tensor, got {x.dtype}")
    if padding not in PADDINGS:
        raise ValueError(f"gradient_map: padding must be one of {PADDINGS}, got {padding!r}")
    if padding == "official_loss":
        # conv2d(padding=2) with a 3x3 kernel == zero-pad by 2, then a 'valid' 3x3 window.
        p = F.pad(x, (2, 2, 2, 2))
    elif padding == "zeros":
        p = F.pad(x, (1, 1, 1, 1))
    else:
        if x.shape[-1] < 2 or x.shape[-2] < 2:
            if padding == "reflect":
                raise ValueError("gradient_map: reflect padding needs H, W >= 2")
        p = F.pad(x, (1, 1, 1, 1), mode=padding)
    gx = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    gy = p[..., 2:, 1:-1] - p[..., :-2, 1:-1]
    return torch.sqrt(gx * gx + gy * gy + eps)


def symmetric_pad(x: Tensor, pad: int) -> Tensor:
    """Pad the last two dims of ``x`` by ``pad`` on every side with the mirror that
    *includes* the edge pixel (numpy's ``"symmetric"``, MATLAB's ``padarray(...,
    'symmetric')``: ``[c b a | a b c ... x y z | z y x]``).

    This is the padding MATLAB's ``imresize`` assumes when it makes an LR image, so the
    padded LR equals the LR of the mirror-extended HR image. ``torch``'s ``"reflect"``
    (``[d c b | a b c d ...]``) leaves out the edge pixel and ``"replicate"`` repeats it.
    ``pad`` may not exceed H or W. ``(..., H, W) -> (..., H + 2 pad, W + 2 pad)``.
    """
    if pad < 0:
        raise ValueError(f"symmetric_pad: pad must be >= 0, got {pad}")
    if pad == 0:
        return x
    if x.ndim < 2 or x.shape[-1] < pad or x.shape[-2] < pad:
        raise ValueError(f"symmetric_pad: pad {pad} exceeds the input's size {tuple(x.shape[-2:])}")
    x = torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], dim=-1)
    return torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], dim=-2)


class GradientMap(nn.Module):
    """Module twin of :func:`gradient_map`. Holds no parameters or device.

    Shape: ``(B, C, H, W) -> (B, C, H, W)`` (``H+2, W+2`` for ``official_loss``).
    """

    def __init__(self, *, padding: Padding = "zeros", eps: float = 1e-6) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"GradientMap: padding must be one of {PADDINGS}, got {padding!r}")
        self.padding = padding
        self.eps = float(eps)

    def forward(self, x: Tensor) -> Tensor:
        return gradient_map(x, padding=self.padding, eps=self.eps)

    def extra_repr(self) -> str:
        return f"padding={self.padding!r}, eps={self.eps}"
