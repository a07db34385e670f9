"""The plugin module named by the entry point: gradguide calls these hooks.

Heavy imports stay inside the hooks, so listing plugins stays cheap.
"""
from __future__ import annotations

import re
from typing import Optional

from gradguide.hookspecs import hookimpl


@hookimpl
def gradguide_backbones() -> list:
    from gradguide.registry import BackboneEntry

    from .arch import CARN, carn_spec

    return [
        BackboneEntry(
            name="carn", factory=CARN, classes=(CARN,), spec=carn_spec, config_of=lambda m: m.config,
            scales=(2, 3, 4, 8), description="CARN (Ahn et al. 2018), cascading residual network [example plugin]",
        )
    ]


def _detect(sd: dict, meta: dict) -> bool:
    return "entry.weight" in sd and "b1.b1.body.0.weight" in sd and "exit.weight" in sd


def _convert(sd: dict, meta: dict, scale: Optional[int] = None) -> tuple:
    """Official CARN-pytorch state dict -> this CARN: the fixed MeanShift convs are verified
    and dropped (the model keeps the mean as a buffer); multi-scale checkpoints keep the
    upsampler for ``scale`` (``upN``), the others are reported as ignored."""
    import torch

    from gradguide.errors import CheckpointError

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
        convs = [k for k in sd if re.match(r"upsample\.up\.body\.\d+\.weight$", k)]
        if scale is None:
            scale = 3 if len(convs) == 1 and sd[convs[0]].shape[0] == 9 * c else 2 ** len(convs)
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
    return "carn", {"scale": int(scale), "channels": c}, out, ignored


@hookimpl
def gradguide_checkpoint_layouts() -> list:
    from gradguide.registry import CheckpointLayout

    return [CheckpointLayout("carn-official", _detect, _convert, 20, "CARN-pytorch (nmhkahn) [example plugin]")]
