"""RRDBNet (ESRGAN) with BasicSR module names, its guidance spec and registry entry.

Module names follow BasicSR (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), so BasicSR / Real-ESRGAN
weights load directly; the old ESRGAN and official SPSR layouts are converted on load
(:mod:`gradguide.checkpoints`). Upsampling is nearest + conv per stage, as in ESRGAN
and SPSR: x2 and x3 use one stage (factor 2 or 3), x4 two, x8 three.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from gradguide.nn.blocks import RRDB, conv3x3, upsample_factors
from gradguide.registry import BackboneEntry
from gradguide.spec import GuidanceSpec, Tap, even_taps

__all__ = ["RRDBNet", "rrdb_spec", "backbone_entries"]


class RRDBNet(nn.Module):
    """ESRGAN generator. ``(B, in_nc, H, W) -> (B, out_nc, sH, sW)``."""

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4) -> None:
        super().__init__()
        if scale not in (2, 3, 4, 8):
            raise ValueError(f"RRDBNet supports scale 2, 3, 4 or 8, got scale={scale}")
        self.in_nc, self.out_nc, self.nf, self.nb, self.gc, self.scale = in_nc, out_nc, nf, nb, gc, scale
        self.factors = upsample_factors(scale)
        self.conv_first = conv3x3(in_nc, nf)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = conv3x3(nf, nf)
        for i, _ in enumerate(self.factors, 1):
            setattr(self, f"conv_up{i}", conv3x3(nf, nf))
        self.conv_hr = conv3x3(nf, nf)
        self.conv_last = conv3x3(nf, out_nc)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i, f in enumerate(self.factors, 1):
            up = getattr(self, f"conv_up{i}")
            feat = self.lrelu(up(F.interpolate(feat, scale_factor=f, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

    @property
    def config(self) -> dict:
        return dict(in_nc=self.in_nc, out_nc=self.out_nc, nf=self.nf, nb=self.nb, gc=self.gc, scale=self.scale)


def rrdb_spec(model: RRDBNet, taps: list[int] | None = None) -> GuidanceSpec:
    """Taps after RRDB blocks 5/10/15/20 for nb=23 (rule: :func:`gradguide.spec.even_taps`)."""
    idx = taps if taps is not None else even_taps(model.nb)
    return GuidanceSpec(
        taps=tuple(Tap(f"body.{i}", model.nf) for i in idx),
        replace="conv_last",
        hr_channels=model.nf,
        scale=model.scale,
        lr_feature="conv_body",
        lr_channels=model.nf,
        in_channels=model.in_nc,
        out_channels=model.out_nc,
    )


def backbone_entries() -> list[BackboneEntry]:
    return [
        BackboneEntry(
            name="rrdbnet",
            factory=RRDBNet,
            classes=(RRDBNet,),
            spec=rrdb_spec,
            config_of=lambda m: m.config,
            description="ESRGAN RRDBNet (BasicSR names; ESRGAN-old, mmsr and SPSR layouts load)",
            scales=(2, 3, 4, 8),
        )
    ]
