"""What an image's edge costs a method, measured on the same pixels.

Comparing the outermost pixels of an image with its interior (``PSNR-frame8`` against
``PSNR-inner8`` in :func:`gradguide.evaluate`) mixes two things: how a method handles
the border, and what the border holds. A frame of blurred background gains less over
bicubic than an interior of sharp edges, whatever the method does at the border (Set5's
butterfly: frame +2.0 dB, inside +4.3 dB for the bundled model).

:func:`border_cost` separates them. It cuts ``margin`` pixels off each side of an HR
image, giving an image ``R``, and super-resolves the outermost ``width`` pixels of ``R``
twice:

* **at the border**: from the LR of ``R`` itself, where they are the image's edge (the
  kernel mirror-pads there, the network sees its own padding);
* **with context**: from the LR of the whole image, cropped to ``R`` afterwards, where the
  same pixels lie ``margin`` pixels inside.

Its PSNR-Y difference on the frame, ``cost``, is what the edge costs the method on those
very pixels. Bicubic pays some too (its mirror padding guesses the content beyond), so a
method's border artifact is its cost beyond bicubic's: :func:`border_study` gives both
for a folder of images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from ..data.imresize import imresize
from ..imageio import read_image, to_uint8_hwc
from .evaluate import BICUBIC, _super_resolve, find_pairs
from .metrics import frame_stats

__all__ = ["BorderCost", "border_cost", "border_study", "DEFAULT_MARGIN"]

#: HR pixels cut off each side: the "with context" pass sees this much beyond the frame
DEFAULT_MARGIN = 64


@dataclass(frozen=True)
class BorderCost:
    """The outermost ``width`` px of one image, super-resolved at the border and with context.

    PSNR-Y on that frame (dB) and its mean signed Y error (levels of 255) for each pass.
    """

    frame_at_border: float
    frame_with_context: float
    bias_at_border: float
    bias_with_context: float

    @property
    def cost(self) -> float:
        """PSNR-Y the frame loses by being the image's edge (dB; 0 = no cost)."""
        return self.frame_with_context - self.frame_at_border


def _frame(sr: np.ndarray, hr: np.ndarray, width: int) -> tuple[float, float]:
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double() / 255.0  # noqa: E731
    psnr, _, bias = frame_stats(t(sr), t(hr), width=width)
    return float(psnr[0]), float(bias[0])


def border_cost(
    model: Optional[nn.Module],
    hr: np.ndarray,
    scale: int,
    *,
    margin: int = DEFAULT_MARGIN,
    width: int = 8,
    tile: Union[int, str, None] = "auto",
    overlap: int = 16,
    device: Union[str, torch.device] = "cpu",
    precision: str = "fp32",
) -> BorderCost:
    """:class:`BorderCost` of ``model`` (``None``: MATLAB bicubic) on one HR image.

    ``hr``: ``(H, W, 3)`` uint8, cropped to a multiple of ``scale`` here. ``margin`` (HR px, a multiple of ``scale``) is
    cut off each side; what is left must be larger than the ``2 * width`` frame.
    """
    scale = int(scale)
    if margin < scale or margin % scale:
        raise ValueError(f"border_cost: margin must be a positive multiple of the scale {scale}, got {margin}")
    hr = np.asarray(hr)
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"border_cost: hr must be an (H, W, 3) uint8 array, got {hr.dtype} {hr.shape}")
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    hr = hr[:h, :w]
    if h - 2 * margin <= 2 * width or w - 2 * margin <= 2 * width:
        raise ValueError(f"border_cost: a {h}x{w} image is too small for a {margin}-px margin and a {width}-px frame")
    inner = hr[margin:-margin, margin:-margin]

    def sr(lr: np.ndarray) -> np.ndarray:
        return _super_resolve(model, lr, scale, tile, overlap, device, precision)

    at_border = _frame(sr(imresize(inner, 1.0 / scale)), inner, width)
    with_context = _frame(sr(imresize(hr, 1.0 / scale))[margin:-margin, margin:-margin], inner, width)
    return BorderCost(at_border[0], with_context[0], at_border[1], with_context[1])


def border_study(
    models: Mapping[str, Union[nn.Module, str]],
    folder: Union[str, os.PathLike],
    scale: int,
    *,
    margin: int = DEFAULT_MARGIN,
    width: int = 8,
    device: Union[str, torch.device] = "cpu",
) -> dict[str, dict[str, BorderCost]]:
    """``{method: {image name: BorderCost}}`` for every HR image in ``folder``.

    ``models`` maps a name to a module or to ``"bicubic"``. An image too small for the
    margin is left out of every method alike.
    """
    files, _ = find_pairs(folder, scale)
    out: dict[str, dict[str, BorderCost]] = {name: {} for name in models}
    for f in files:
        hr = to_uint8_hwc(read_image(f).rgb)
        for name, m in models.items():
            net = None if isinstance(m, str) and m == BICUBIC else m
            try:
                out[name][Path(f).stem] = border_cost(net, hr, scale, margin=margin, width=width, device=device)
            except ValueError:
                break  # too small: skipped for every method
    return out
