"""The gradient branch (SPSR Sec. 3.2.1): LR gradient map + backbone taps -> HR gradient.

Data flow, for ``T`` taps and branch width ``w``::

    M(LR) --embed--> g0 (w)                         LR resolution
    for k in 1..T:   g_k = reduce_k(block_k(cat(g_{k-1}, tap_k)))
    f = lr_conv(g_T) + g0                           shortcut, LR resolution
    h = hr_conv1(lrelu(hr_conv0(up(f))))            HR features, fed to the fusion
    grad = to_grad(h)                               1x1 conv -> HR gradient map

With RRDB gradient blocks and taps after RRDB 5/10/15/20 this is the official SPSR
branch (``b_fea_conv``, ``b_block_k``, ``b_concat_k``, ``b_LR_conv``, ``b_module``,
``conv_w``). The block type is a parameter (:data:`~gradguide.nn.blocks.BlockFactory`).
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .blocks import RRDB, BlockFactory, conv3x3, lrelu, make_upsampler

__all__ = ["GradientBranch", "BranchStage", "rrdb_block"]


def rrdb_block(channels: int, gc: int = 32) -> nn.Module:
    """Default gradient block: an RRDB at ``channels`` with growth ``gc`` (official: 32)."""
    return RRDB(channels, gc)


class BranchStage(nn.Module):
    """``reduce(block(cat(g, tap)))``: ``(B, w, H, W), (B, c_tap, H, W) -> (B, w, H, W)``."""

    def __init__(self, width: int, tap_channels: int, block: BlockFactory) -> None:
        super().__init__()
        self.block = block(width + tap_channels)
        self.reduce = conv3x3(width + tap_channels, width)

    def forward(self, g: Tensor, tap: Tensor) -> Tensor:
        if tap.shape[-2:] != g.shape[-2:]:
            raise ValueError(
                f"gradient branch: tap of spatial size {tuple(tap.shape[-2:])} does not match the "
                f"LR size {tuple(g.shape[-2:])}; taps must be LR-resolution features"
            )
        return self.reduce(self.block(torch.cat((g, tap), 1)))


class GradientBranch(nn.Module):
    """Translate the LR gradient map into an HR gradient map, guided by backbone taps.

    Args:
        tap_channels: channels of each tapped backbone feature, in tap order.
        in_channels: channels of the gradient map (= image channels).
        out_channels: channels of the HR gradient output.
        width: branch feature width (official: nf).
        scale: upscaling factor (2, 3, 4, 8).
        block: factory for the gradient blocks (default RRDB with gc=32).
        upsampler: ``"nearest"`` (official) or ``"pixelshuffle"``.
        hr_head: with False, the branch has no HR convs; the HR gradient comes from the
            upsampled LR features directly through ``to_grad`` (cheaper, for LR fusion).

    Shapes: ``lr_grad (B, in, H, W)``, taps ``(B, c_k, H, W)`` ->
    ``(hr_features (B, width, sH, sW), grad (B, out, sH, sW))``.
    """

    def __init__(
        self,
        tap_channels: Sequence[int],
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 64,
        scale: int = 4,
        block: Optional[BlockFactory] = None,
        upsampler: str = "nearest",
        hr_head: bool = True,
    ) -> None:
        super().__init__()
        if len(tap_channels) == 0:
            raise ValueError("GradientBranch needs at least one tap")
        block = block or partial(rrdb_block, gc=32)
        self.width = width
        self.scale = scale
        self.embed = conv3x3(in_channels, width)
        self.stages = nn.ModuleList(BranchStage(width, c, block) for c in tap_channels)
        self.lr_conv = conv3x3(width, width)
        self.up = make_upsampler(width, scale, upsampler)
        self.hr_head = hr_head
        if hr_head:
            self.hr_conv0 = conv3x3(width, width)
            self.hr_conv1 = conv3x3(width, width)
            self.act = lrelu()
        self.to_grad = nn.Conv2d(width, out_channels, 1)

    @property
    def num_taps(self) -> int:
        return len(self.stages)

    def forward_lr(self, lr_grad: Tensor, taps: Sequence[Tensor]) -> Tensor:
        """LR part: ``(B, in, H, W)`` + taps -> ``(B, width, H, W)``."""
        if len(taps) != len(self.stages):
            raise ValueError(f"gradient branch expects {len(self.stages)} taps, got {len(taps)}")
        g0 = self.embed(lr_grad)
        g = g0
        for stage, tap in zip(self.stages, taps):
            g = stage(g, tap)
        return self.lr_conv(g) + g0

    def forward_hr(self, lr_features: Tensor) -> tuple[Tensor, Tensor]:
        """HR part: ``(B, width, H, W) -> (features (B, width, sH, sW), grad (B, out, sH, sW))``."""
        h = self.up(lr_features)
        if self.hr_head:
            h = self.hr_conv1(self.act(self.hr_conv0(h)))
        return h, self.to_grad(h)

    def forward(self, lr_grad: Tensor, taps: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        return self.forward_hr(self.forward_lr(lr_grad, taps))
