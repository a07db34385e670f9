"""Fusion blocks: feed the gradient branch's features back into the SR branch.

``PaperFusion`` is SPSR's (Sec. 3.2.2) and runs at HR resolution, replacing the
backbone's final reconstruction conv. ``LRFusion`` is gradguide's efficient variant: it
injects the branch's LR features into the backbone's LR feature before upsampling, so
the backbone's own upsampler and reconstruction layers stay in place.
"""
from __future__ import annotations

from functools import partial
from typing import ClassVar, Optional

import torch
from torch import Tensor, nn

from .blocks import RRDB, BlockFactory, ResidualDenseBlock, conv3x3, lrelu

__all__ = ["PaperFusion", "LRFusion", "FUSIONS"]


class PaperFusion(nn.Module):
    """SPSR fusion at HR resolution.

    ``proj`` replaces the backbone's final conv (official ``HR_conv1_new``, nf -> nf);
    then ``block(cat(branch, proj(h)))`` (``f_block``, an RRDB at 2nf), ``reduce``
    (``f_concat``), ``hr_conv0`` + LeakyReLU (``f_HR_conv0``) and ``hr_conv1`` to the
    output channels (``f_HR_conv1``).

    Shapes: ``branch (B, cb, sH, sW)``, ``h (B, ch, sH, sW)`` -> ``(B, out, sH, sW)``.
    """

    placement: ClassVar[str] = "hr"

    def __init__(
        self,
        hr_channels: int,
        branch_channels: int,
        out_channels: int = 3,
        block: Optional[BlockFactory] = None,
    ) -> None:
        super().__init__()
        block = block or partial(RRDB, gc=32)
        c = hr_channels + branch_channels
        self.proj = conv3x3(hr_channels, hr_channels)
        self.block = block(c)
        self.reduce = conv3x3(c, hr_channels)
        self.hr_conv0 = conv3x3(hr_channels, hr_channels)
        self.hr_conv1 = conv3x3(hr_channels, out_channels)
        self.act = lrelu()

    def forward(self, branch: Tensor, h: Tensor) -> Tensor:
        x = self.reduce(self.block(torch.cat((branch, self.proj(h)), 1)))
        return self.hr_conv1(self.act(self.hr_conv0(x)))

    def warmup_modules(self) -> list[nn.Module]:
        """The official warm-up trains only the ``f_*`` modules (not ``HR_conv1_new``)."""
        return [self.block, self.reduce, self.hr_conv0, self.hr_conv1]


class LRFusion(nn.Module):
    """Efficient fusion at LR resolution: ``f + out(block(in(cat(branch, f))))``.

    The last conv is zero-initialised, so a freshly wrapped pretrained backbone gives
    exactly its original output until the fusion has trained.

    Shapes: ``branch (B, cb, H, W)``, ``f (B, cf, H, W)`` -> ``(B, cf, H, W)``.
    """

    placement: ClassVar[str] = "lr"

    def __init__(
        self,
        lr_channels: int,
        branch_channels: int,
        block: Optional[BlockFactory] = None,
        width: Optional[int] = None,
    ) -> None:
        super().__init__()
        width = width or lr_channels
        block = block or partial(ResidualDenseBlock, gc=32)
        self.inp = conv3x3(lr_channels + branch_channels, width)
        self.block = block(width)
        self.out = conv3x3(width, lr_channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.act = lrelu()

    def forward(self, branch: Tensor, f: Tensor) -> Tensor:
        return f + self.out(self.block(self.act(self.inp(torch.cat((branch, f), 1)))))

    def warmup_modules(self) -> list[nn.Module]:
        return [self]


FUSIONS: dict[str, type[nn.Module]] = {"paper": PaperFusion, "lr": LRFusion}
