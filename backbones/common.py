"""BasicSR's ``Upsample``, shared by the built-in EDSR, RCAN and SwinIR."""
from __future__ import annotations

import math
import re
from typing import Mapping

from torch import Tensor, nn

from gradguide.plugin import shuffle_factor

__all__ = ["Upsample", "upsample_stages"]


class Upsample(nn.Sequential):
    """BasicSR's ``Upsample``: ``[conv(nf -> 4nf), PixelShuffle(2)] * log2(s)`` or
    ``[conv(nf -> 9nf), PixelShuffle(3)]``. Shape: ``(B, nf, H, W) -> (B, nf, sH, sW)``."""

    def __init__(self, scale: int, num_feat: int) -> None:
        m: list[nn.Module] = []
        if scale >= 2 and (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                m += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            m += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale {scale} is not supported (2^n or 3)")
        super().__init__(*m)


def upsample_stages(sd: Mapping[str, Tensor], prefix: str, num_feat: int) -> list[int]:
    """The factors of a BasicSR ``Upsample`` stored under ``prefix`` (``upsample.``), for
    :func:`gradguide.plugin.infer_scale`."""
    convs = sorted(int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.weight$", k)))
    return [shuffle_factor(sd[f"{prefix}{i}.weight"].shape[0], num_feat) for i in convs]
