"""Helpers shared by the built-in backbones: BasicSR's ``Upsample`` and checkpoint-layout
utilities (hyperparameters inferred from tensor shapes)."""
from __future__ import annotations

import math
import re
from typing import Optional

from torch import Tensor, nn

__all__ = ["Upsample", "count_indexed", "shuffle_scale", "rename"]


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


def count_indexed(sd: dict[str, Tensor], prefix: str) -> int:
    """Number of distinct ``N`` in keys ``{prefix}N.…``."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for k in sd if (m := pat.match(k))})


def shuffle_scale(sd: dict[str, Tensor], prefix: str, num_feat: int, meta: dict, scale: Optional[int]) -> int:
    """Scale of a BasicSR ``Upsample`` stored under ``prefix`` (``upsample.``): one stage
    of 9nf is x3, otherwise 2^(number of 4nf stages)."""
    if scale is not None:
        return int(scale)
    convs = sorted(int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.weight$", k)))
    if not convs:
        raise ValueError(f"no upsampling convs under {prefix!r}")
    if len(convs) == 1 and sd[f"{prefix}{convs[0]}.weight"].shape[0] == 9 * num_feat:
        return 3
    return 2 ** len(convs)


def rename(sd: dict[str, Tensor], rules: list[tuple[str, str]]) -> tuple[dict[str, Tensor], list[str]]:
    """Apply the first matching ``(regex, replacement)`` to each key; returns the renamed
    dict and the keys no rule matched."""
    out, unmatched = {}, []
    compiled = [(re.compile(p), r) for p, r in rules]
    for k, v in sd.items():
        for pat, rep in compiled:
            if pat.fullmatch(k):
                out[pat.sub(rep, k)] = v
                break
        else:
            unmatched.append(k)
    return out, unmatched
