"""SRResNet (SRGAN, Ledig et al. 2017) in BasicSR's ``MSRResNet`` form (no batch norm).

Module names follow BasicSR (``conv_first``, ``body.N.conv1/conv2``, ``upconv1``,
``upconv2``, ``conv_hr``, ``conv_last``), so BasicSR's released MSRResNet weights load
as they are. The output adds a bilinear upsampling of the input, as BasicSR does.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from gradguide.plugin import Architecture, CheckpointLayout, Converted, GuidanceSpec, Tap, count_indexed, even_taps, infer_scale, shuffle_factor

__all__ = ["ResidualBlockNoBN", "MSRResNet", "srresnet_spec", "backbone_entries"]


class ResidualBlockNoBN(nn.Module):
    """``x + res_scale * conv2(relu(conv1(x)))``. Shape: ``(B, nf, H, W) -> same``."""

    def __init__(self, num_feat: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class MSRResNet(nn.Module):
    """SRResNet without BN. ``(B, in, H, W) -> (B, out, sH, sW)``, ``s`` in 2, 3, 4."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16, upscale: int = 4) -> None:
        super().__init__()
        if upscale not in (2, 3, 4):
            raise ValueError(f"MSRResNet supports upscale 2, 3 or 4, got upscale={upscale}")
        self.num_in_ch, self.num_out_ch, self.num_feat, self.num_block, self.upscale = num_in_ch, num_out_ch, num_feat, num_block, upscale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        if upscale in (2, 3):
            self.upconv1 = nn.Conv2d(num_feat, num_feat * upscale * upscale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        else:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    @property
    def scale(self) -> int:
        return self.upscale

    def forward(self, x: Tensor) -> Tensor:
        feat = self.lrelu(self.conv_first(x))
        out = self.body(feat)
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)

    @property
    def config(self) -> dict:
        return dict(num_in_ch=self.num_in_ch, num_out_ch=self.num_out_ch, num_feat=self.num_feat,
                    num_block=self.num_block, upscale=self.upscale)


def srresnet_spec(model: MSRResNet) -> GuidanceSpec:
    """Taps after residual blocks (rule: :func:`gradguide.spec.even_taps`; 4, 8, 12, 16 of 16)."""
    nf = model.num_feat
    return GuidanceSpec(
        taps=tuple(Tap(f"body.{i}", nf) for i in even_taps(model.num_block)),
        replace="conv_last", hr_channels=nf, scale=model.upscale,
        lr_feature="body", lr_channels=nf, in_channels=model.num_in_ch, out_channels=model.num_out_ch,
    )


def _convert(sd: dict, meta: dict, scale: Optional[int]) -> Converted:
    nf = int(sd["conv_first.weight"].shape[0])
    stages = [shuffle_factor(sd[k].shape[0], nf) for k in ("upconv1.weight", "upconv2.weight") if k in sd]
    scale = infer_scale(stages, meta, scale)
    cfg = dict(num_in_ch=int(sd["conv_first.weight"].shape[1]), num_out_ch=int(sd["conv_last.weight"].shape[0]),
               num_feat=nf, num_block=count_indexed(sd, "body."), upscale=int(scale))
    return Converted(cfg, dict(sd), {})


LAYOUTS = (
    CheckpointLayout("basicsr-msrresnet", _convert, keys=("conv_first.weight", "body.0.conv1.weight", "upconv1.weight", "conv_hr.weight"),
                     priority=20, description="BasicSR MSRResNet (SRResNet, no BN)"),
)


def backbone_entries() -> list[Architecture]:
    return [
        Architecture(
            name="srresnet", factory=MSRResNet, classes=(MSRResNet,), spec=srresnet_spec,
            config_of=lambda m: m.config, scales=(2, 3, 4), scale_arg="upscale",
            description="SRResNet (SRGAN generator, BasicSR MSRResNet names, no BN)", layouts=LAYOUTS,
        )
    ]
