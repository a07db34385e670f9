"""The plugin module named by the entry point: gradguide calls its hook.

It imports only :mod:`gradguide.plugin`, the public API for plugin authors.
"""
from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
from torch import Tensor

from gradguide.plugin import Architecture, CheckpointError, CheckpointLayout, Converted, hookimpl, infer_scale, shuffle_factor

from .arch import CARN, carn_spec


def _convert(sd: Mapping[str, Tensor], meta: Mapping[str, str], scale: Optional[int]) -> Converted:
    """Official CARN-pytorch state dict -> this CARN: the fixed MeanShift convs are verified
    and dropped (the model keeps the mean as a buffer); multi-scale checkpoints keep the
    upsampler for ``scale`` (``upN``), the others are reported as ignored."""
    ignored: dict[str, str] = {}
    out = {}
    c = int(sd["entry.weight"].shape[0])
    ups = sorted({m.group(1) for k in sd if (m := re.match(r"upsample\.(up\d?)\.", k))})
    if ups != ["up"]:  # multi-scale model: up2, up3, up4
        if scale is None:
            raise CheckpointError(f"multi-scale CARN checkpoint ({', '.join(ups)}): pass scale= to pick one")
        keep = f"up{scale}"
        if keep not in ups:
            raise CheckpointError(f"multi-scale CARN checkpoint has {', '.join(ups)}, not {keep}")
    else:
        keep = "up"
        convs = sorted(k for k in sd if re.match(r"upsample\.up\.body\.\d+\.weight$", k))
        scale = infer_scale([shuffle_factor(sd[k].shape[0], c) for k in convs], meta, scale)
    for k, v in sd.items():
        if k.startswith(("sub_mean.", "add_mean.")):
            if k.endswith("weight") and not torch.equal(v.view(3, 3).float(), torch.eye(3)):
                raise CheckpointError(f"{k}: not an identity MeanShift")
            ignored[k] = "fixed MeanShift, done by the model's mean buffer"
        elif m := re.match(r"upsample\.(up\d?)\.(.*)$", k):
            if m.group(1) == keep:
                out[f"upsample.up.{m.group(2)}"] = v
            else:
                ignored[k] = f"upsampler of another scale ({m.group(1)})"
        else:
            out[k] = v
    return Converted({"scale": int(scale), "channels": c}, out, ignored)


@hookimpl
def gradguide_backbones() -> list[Architecture]:
    return [
        Architecture(
            name="carn", factory=CARN, classes=(CARN,), spec=carn_spec, config_of=lambda m: m.config,
            scales=(2, 3, 4, 8), description="CARN (Ahn et al. 2018), cascading residual network [example plugin]",
            layouts=(
                CheckpointLayout(
                    "carn-official", _convert, keys=("entry.weight", "b1.b1.body.0.weight", "exit.weight"),
                    priority=20, description="CARN-pytorch (nmhkahn) [example plugin]",
                ),
            ),
        )
    ]
