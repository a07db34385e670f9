"""RCAN (Zhang et al. 2018) with BasicSR module names.

Names follow BasicSR (``conv_first``, ``body.G.residual_group.B.rcab.{0,2}``,
``rcab.3.attention.{1,3}``, ``body.G.conv``, ``conv_after_body``, ``upsample``,
``conv_last``); the official RCAN layout (``head``, ``body.G.body.B.body.3.conv_du``,
``tail``, MeanShift) is converted on load.
"""
from __future__ import annotations

import re
from typing import Optional

from torch import Tensor, nn

from gradguide.plugin import Architecture, CheckpointLayout, Converted, GuidanceSpec, Tap, count_indexed, even_taps, infer_scale

from .common import Upsample, upsample_stages
from .edsr import DIV2K_MEAN, mean_buffer, official_to_basicsr

__all__ = ["RCAN", "ChannelAttention", "RCAB", "ResidualGroup", "rcan_spec", "backbone_entries"]


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(conv(relu(conv(avgpool(x)))))``. Shape preserved."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(num_feat, num_feat // squeeze_factor, 1), nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze_factor, num_feat, 1), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention(x)


class RCAB(nn.Module):
    """Residual channel-attention block. Shape preserved."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.rcab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU(True), nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze_factor),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.rcab(x) * self.res_scale + x


class ResidualGroup(nn.Module):
    """``x + conv(RCAB * num_block (x))``. Shape preserved."""

    def __init__(self, num_feat: int, num_block: int, squeeze_factor: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.residual_group = nn.Sequential(*[RCAB(num_feat, squeeze_factor, res_scale) for _ in range(num_block)])
        self.conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.residual_group(x)) + x


class RCAN(nn.Module):
    """RCAN. ``(B, in, H, W) -> (B, out, sH, sW)``; the paper's model is the default
    (10 groups of 16 RCABs, 64 features)."""

    def __init__(
        self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_group: int = 10, num_block: int = 16,
        squeeze_factor: int = 16, upscale: int = 4, res_scale: float = 1.0, img_range: float = 255.0,
        rgb_mean: tuple = DIV2K_MEAN,
    ) -> None:
        super().__init__()
        self.num_in_ch, self.num_out_ch, self.num_feat, self.num_group, self.num_block = num_in_ch, num_out_ch, num_feat, num_group, num_block
        self.squeeze_factor, self.upscale, self.res_scale = squeeze_factor, upscale, res_scale
        self.img_range, self.rgb_mean = img_range, tuple(rgb_mean)
        self.register_buffer("mean", mean_buffer(rgb_mean, num_in_ch), persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualGroup(num_feat, num_block, squeeze_factor, res_scale) for _ in range(num_group)])
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
        return dict(num_in_ch=self.num_in_ch, num_out_ch=self.num_out_ch, num_feat=self.num_feat, num_group=self.num_group,
                    num_block=self.num_block, squeeze_factor=self.squeeze_factor, upscale=self.upscale,
                    res_scale=self.res_scale, img_range=self.img_range, rgb_mean=list(self.rgb_mean))


def rcan_spec(model: RCAN) -> GuidanceSpec:
    """Taps after residual groups (:func:`gradguide.spec.even_taps`; groups 2, 4, 6, 8 of 10)."""
    nf = model.num_feat
    return GuidanceSpec(
        taps=tuple(Tap(f"body.{i}", nf) for i in even_taps(model.num_group)),
        replace="conv_last", hr_channels=nf, scale=model.upscale,
        lr_feature="conv_after_body", lr_channels=nf, in_channels=model.num_in_ch, out_channels=model.num_out_ch,
    )


def _config(sd: dict, meta: dict, scale: Optional[int]) -> dict:
    nf = int(sd["conv_first.weight"].shape[0])
    return dict(
        num_in_ch=int(sd["conv_first.weight"].shape[1]), num_out_ch=int(sd["conv_last.weight"].shape[0]), num_feat=nf,
        num_group=count_indexed(sd, "body."), num_block=count_indexed(sd, "body.0.residual_group."),
        squeeze_factor=nf // int(sd["body.0.residual_group.0.rcab.3.attention.1.weight"].shape[0]),
        upscale=infer_scale(upsample_stages(sd, "upsample.", nf), meta, scale),
    )


def _convert_basicsr(sd: dict, meta: dict, scale: Optional[int]) -> Converted:
    return Converted(_config(sd, meta, scale), dict(sd), {})


def _convert_official(sd: dict, meta: dict, scale: Optional[int]) -> Converted:
    nblock = count_indexed({k: v for k, v in sd.items() if re.match(r"body\.0\.body\.\d+\.body\.", k)}, "body.0.body.")
    out, ignored = official_to_basicsr(sd, [
        (r"body\.(\d+)\.body\.(\d+)\.body\.(0|2)\.(weight|bias)", r"body.\1.residual_group.\2.rcab.\3.\4"),
        (r"body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.0\.(weight|bias)", r"body.\1.residual_group.\2.rcab.3.attention.1.\3"),
        (r"body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.2\.(weight|bias)", r"body.\1.residual_group.\2.rcab.3.attention.3.\3"),
        (rf"body\.(\d+)\.body\.{nblock}\.(weight|bias)", r"body.\1.conv.\2"),
    ])
    return Converted(_config(out, meta, scale), out, ignored)


LAYOUTS = (
    CheckpointLayout("basicsr-rcan", _convert_basicsr, keys=("conv_first.weight", "body.0.residual_group.0.rcab.0.weight"),
                     priority=20, description="BasicSR RCAN"),
    CheckpointLayout("rcan-official", _convert_official, keys=("head.0.weight", "body.0.body.0.body.3.conv_du.0.weight"),
                     priority=21, description="RCAN official (head/body/tail, MeanShift)"),
)


def backbone_entries() -> list[Architecture]:
    return [
        Architecture(
            name="rcan", factory=RCAN, classes=(RCAN,), spec=rcan_spec, config_of=lambda m: m.config, scales=(2, 3, 4),
            description="RCAN (BasicSR names; official RCAN layout loads)", scale_arg="upscale", layouts=LAYOUTS,
        )
    ]
