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

from .blocks import BLOCKS, RRDB, BlockFactory, conv3x3, lrelu, make_upsampler

__all__ = ["GradientBranch", "BranchStage", "rrdb_block", "ShuffleGradHead", "LRGradientBranch"]


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

    @classmethod
    def from_spec(cls, spec, width: int, block: BlockFactory, upsampler: str = "nearest") -> "GradientBranch":
        """The branch for a :class:`~gradguide.spec.GuidanceSpec` (its taps, channels, scale)."""
        return cls([t.channels for t in spec.taps], in_channels=spec.in_channels, out_channels=spec.out_channels,
                   width=width, scale=spec.scale, block=block, upsampler=upsampler)

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


class ShuffleGradHead(nn.Module):
    """HR gradient map straight from LR features: ``conv3x3(w -> out * s^2)`` + pixel shuffle.

    Shape: ``(B, w, H, W) -> (B, out, sH, sW)``. Costs ``9 * w * out * s^2`` MACs per LR
    pixel: ~1/60 of one HR-resolution 3x3 conv at w=64, x4.
    """

    def __init__(self, width: int, out_channels: int, scale: int) -> None:
        super().__init__()
        self.conv = conv3x3(width, out_channels * scale * scale)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))


class LRGradientBranch(GradientBranch):
    """The gradient branch of the efficient (``"lr"``) fusion: everything at LR resolution.

    Same LR part as :class:`GradientBranch` (embed, one stage per tap, ``lr_conv``
    shortcut); the HR gradient map comes from a :class:`ShuffleGradHead` (``to_grad``)
    instead of HR-resolution convs.

    Shapes: ``lr_grad (B, in, H, W)``, taps ``(B, c_k, H, W)`` -> ``forward_lr``:
    ``(B, width, H, W)``; ``forward_hr``: ``(grad, grad)`` both ``(B, out, sH, sW)``.
    """

    def __init__(
        self,
        tap_channels: "list[int] | tuple[int, ...]",
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 32,
        scale: int = 4,
        block: Optional[BlockFactory] = None,
    ) -> None:
        super().__init__(
            tap_channels, in_channels=in_channels, out_channels=out_channels, width=width, scale=1,
            block=block or BLOCKS["rdb"], hr_head=False,
        )
        self.scale = scale
        self.to_grad = ShuffleGradHead(width, out_channels, scale)

    @classmethod
    def from_spec(cls, spec, width: int, block: BlockFactory, upsampler: str = "nearest") -> "LRGradientBranch":
        """The branch for a spec (``upsampler`` is unused: the head is a pixel shuffle)."""
        return cls([t.channels for t in spec.taps], in_channels=spec.in_channels, out_channels=spec.out_channels,
                   width=width, scale=spec.scale, block=block)

    def forward_hr(self, lr_features: Tensor) -> tuple[Tensor, Tensor]:
        g = self.to_grad(lr_features)
        return g, g
