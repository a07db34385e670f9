"""EDSR (Lim et al. 2017) with BasicSR module names.

Module names follow BasicSR (``conv_first``, ``body.N.conv1/conv2``,
``conv_after_body``, ``upsample.K``, ``conv_last``); the official EDSR-PyTorch layout
(``head``, ``body.N.body.0/2``, ``tail``, ``sub_mean``/``add_mean``) is converted on
load. Inputs are in [0, 1]; the mean shift and ``img_range`` scaling are those of
BasicSR (equivalent to the official model's [0, 255] range).
"""
from __future__ import annotations

import re
from typing import Optional

import torch
from torch import Tensor, nn

from gradguide.plugin import (
    Architecture, CheckpointError, CheckpointLayout, Converted, GuidanceSpec, Tap, count_indexed, even_taps, infer_scale, rename,
)

from .common import Upsample, upsample_stages
from .srresnet import ResidualBlockNoBN

__all__ = ["EDSR", "edsr_spec", "backbone_entries", "DIV2K_MEAN", "mean_buffer", "official_to_basicsr"]

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class EDSR(nn.Module):
    """EDSR. ``(B, in, H, W) -> (B, out, sH, sW)``; EDSR-baseline is the default
    (64 features, 16 blocks), EDSR is ``num_feat=256, num_block=32, res_scale=0.1``."""

    def __init__(
        self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16, upscale: int = 4,
        res_scale: float = 1.0, img_range: float = 255.0, rgb_mean: tuple = DIV2K_MEAN,
    ) -> None:
        super().__init__()
        self.num_in_ch, self.num_out_ch, self.num_feat, self.num_block = num_in_ch, num_out_ch, num_feat, num_block
        self.upscale, self.res_scale, self.img_range, self.rgb_mean = upscale, res_scale, img_range, tuple(rgb_mean)
        self.register_buffer("mean", mean_buffer(rgb_mean, num_in_ch), persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    @property
    def scale(self) -> int:
        return self.upscale

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        res = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(res)) / self.img_range + self.mean

    @property
    def config(self) -> dict:
        return dict(num_in_ch=self.num_in_ch, num_out_ch=self.num_out_ch, num_feat=self.num_feat, num_block=self.num_block,
                    upscale=self.upscale, res_scale=self.res_scale, img_range=self.img_range, rgb_mean=list(self.rgb_mean))


def mean_buffer(rgb_mean, channels: int) -> Tensor:
    """The ``(1, C, 1, 1)`` mean the model subtracts (zeros when ``C`` is not the mean's length)."""
    m = torch.tensor(rgb_mean, dtype=torch.float32)
    if channels != len(m):
        m = torch.zeros(channels)
    return m.view(1, -1, 1, 1)


def edsr_spec(model: EDSR) -> GuidanceSpec:
    """Taps after residual blocks (:func:`gradguide.spec.even_taps`), the HR feature is the
    upsampler's output (input of ``conv_last``), the LR feature ``conv_after_body``."""
    nf = model.num_feat
    return GuidanceSpec(
        taps=tuple(Tap(f"body.{i}", nf) for i in even_taps(model.num_block)),
        replace="conv_last", hr_channels=nf, scale=model.upscale,
        lr_feature="conv_after_body", lr_channels=nf, in_channels=model.num_in_ch, out_channels=model.num_out_ch,
    )


def _config(sd: dict, meta: dict, scale: Optional[int]) -> dict:
    nf = int(sd["conv_first.weight"].shape[0])
    return dict(
        num_in_ch=int(sd["conv_first.weight"].shape[1]), num_out_ch=int(sd["conv_last.weight"].shape[0]), num_feat=nf,
        num_block=count_indexed(sd, "body."), upscale=infer_scale(upsample_stages(sd, "upsample.", nf), meta, scale),
        # the paper's large EDSR (256 features) uses residual scaling 0.1, the baseline none
        res_scale=0.1 if nf >= 256 else 1.0,
    )


def _convert_basicsr(sd: dict, meta: dict, scale: Optional[int]) -> Converted:
    return Converted(_config(sd, meta, scale), dict(sd), {})


def _mean_shift_ignored(sd: dict) -> dict[str, str]:
    """The official MeanShift 1x1 convs (fixed DIV2K mean, std 1); verified, then dropped."""
    ignored = {}
    for name in ("sub_mean", "add_mean"):
        w, b = sd.get(f"{name}.weight"), sd.get(f"{name}.bias")
        if w is None:
            continue
        eye = torch.eye(w.shape[0]).view(w.shape[0], w.shape[0], 1, 1)
        if w.shape != eye.shape or not torch.allclose(w.float(), eye):
            raise CheckpointError(f"{name}.weight is not the identity MeanShift (rgb_std != 1 is not supported)")
        ignored[f"{name}.weight"] = "fixed MeanShift (identity), done by the model's mean buffer"
        ignored[f"{name}.bias"] = "fixed MeanShift (DIV2K mean * 255), done by the model's mean buffer"
    return ignored


def official_to_basicsr(sd: dict, inner: list) -> tuple[dict, dict]:
    """head/body/tail -> conv_first/body/conv_after_body/upsample/conv_last."""
    ignored = _mean_shift_ignored(sd)
    nb = count_indexed({k: v for k, v in sd.items() if re.match(r"body\.\d+\.body\.", k)}, "body.")
    rules = [
        (r"head\.0\.(weight|bias)", r"conv_first.\1"),
        (rf"body\.{nb}\.(weight|bias)", r"conv_after_body.\1"),
        (r"tail\.0\.(\d+)\.(weight|bias)", r"upsample.\1.\2"),
        (r"tail\.1\.(weight|bias)", r"conv_last.\1"),
        *inner,
    ]
    out, unmatched = rename({k: v for k, v in sd.items() if k not in ignored}, rules)
    if unmatched:
        raise CheckpointError(f"unexpected keys {unmatched[:4]}")
    return out, ignored


def _convert_official(sd: dict, meta: dict, scale: Optional[int]) -> Converted:
    out, ignored = official_to_basicsr(sd, [
        (r"body\.(\d+)\.body\.0\.(weight|bias)", r"body.\1.conv1.\2"),
        (r"body\.(\d+)\.body\.2\.(weight|bias)", r"body.\1.conv2.\2"),
    ])
    return Converted(_config(out, meta, scale), out, ignored)


LAYOUTS = (
    CheckpointLayout(
        "basicsr-edsr", _convert_basicsr, keys=("conv_first.weight", "body.0.conv1.weight", "conv_after_body.weight", "upsample.0.weight"),
        priority=20, description="BasicSR EDSR",
    ),
    CheckpointLayout(
        "edsr-official", _convert_official, keys=("head.0.weight", "body.0.body.0.weight", "tail.0.0.weight"),
        absent=("body.0.body.3.conv_du.0.weight",), priority=20, description="EDSR-PyTorch (head/body/tail, MeanShift)",
    ),
)


def backbone_entries() -> list[Architecture]:
    return [
        Architecture(
            name="edsr", factory=EDSR, classes=(EDSR,), spec=edsr_spec, config_of=lambda m: m.config, scales=(2, 3, 4),
            description="EDSR / EDSR-baseline (BasicSR names; EDSR-PyTorch layout loads)", scale_arg="upscale", layouts=LAYOUTS,
        )
    ]
