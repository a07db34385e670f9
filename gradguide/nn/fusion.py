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
from .branch import GradientBranch

__all__ = [
    "PaperFusion",
    "LRFusion",
    "LRGradientBranch",
    "ShuffleGradHead",
    "ResBlock",
    "FUSIONS",
    "BLOCKS",
    "block_factory",
]


class ResBlock(nn.Module):
    """``x + conv(lrelu(conv(x)))`` (EDSR-style, no BN). Shape: ``(B, c, H, W) -> same``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.act = lrelu()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


#: gradient / fusion block types by name (names are what checkpoints record)
BLOCKS: dict[str, BlockFactory] = {
    "rrdb": partial(RRDB, gc=32),
    "rdb": partial(ResidualDenseBlock, gc=32),
    "res": ResBlock,
}


def block_factory(block: "str | BlockFactory | None", default: str) -> tuple[BlockFactory, str]:
    """``(factory, name)`` for a block given by name (see :data:`BLOCKS`) or factory.

    A factory passed directly is recorded as ``"custom"`` (such a model saves, but
    :func:`gradguide.load` cannot rebuild it without being given the model).
    """
    if block is None:
        block = default
    if isinstance(block, str):
        if block not in BLOCKS:
            from ..errors import SpecError

            raise SpecError(f"unknown block {block!r}; known: {', '.join(sorted(BLOCKS))} (or pass a factory)")
        return BLOCKS[block], block
    if not callable(block):
        from ..errors import SpecError

        raise SpecError(f"block must be a name ({', '.join(sorted(BLOCKS))}) or a factory(channels), got {block!r}")
    return block, "custom"


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

    Same LR part as :class:`~gradguide.nn.branch.GradientBranch` (embed, one stage per
    tap, ``lr_conv`` shortcut); the HR gradient map comes from a
    :class:`ShuffleGradHead` (``to_grad``) instead of HR-resolution convs.

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

    def forward_hr(self, lr_features: Tensor) -> tuple[Tensor, Tensor]:
        g = self.to_grad(lr_features)
        return g, g


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
        block = block or BLOCKS["rdb"]
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
