"""Convolutional building blocks: RRDB (ESRGAN), RDB, residual block, upsamplers, conv
helpers, and the named block types gradient branches and fusions are built from.

Shapes are ``(B, C, H, W)`` throughout. Nothing here picks a device.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import SpecError

__all__ = [
    "conv3x3",
    "lrelu",
    "ResidualDenseBlock",
    "RRDB",
    "UpConv",
    "PixelShuffleUp",
    "make_upsampler",
    "upsample_factors",
    "BlockFactory",
    "ResBlock",
    "BLOCKS",
    "block_factory",
]

BlockFactory = Callable[[int], nn.Module]
"""``factory(channels) -> module`` mapping ``(B, channels, H, W)`` to the same shape."""


def conv3x3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)


def lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class ResidualDenseBlock(nn.Module):
    """Residual dense block with 5 convs (ESRGAN): ``x + 0.2 * conv5(dense(x))``.

    Shape: ``(B, nf, H, W) -> (B, nf, H, W)``.
    """

    def __init__(self, nf: int = 64, gc: int = 32, res_scale: float = 0.2) -> None:
        super().__init__()
        self.conv1 = conv3x3(nf, gc)
        self.conv2 = conv3x3(nf + gc, gc)
        self.conv3 = conv3x3(nf + 2 * gc, gc)
        self.conv4 = conv3x3(nf + 3 * gc, gc)
        self.conv5 = conv3x3(nf + 4 * gc, nf)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.act(self.conv1(x))
        x2 = self.act(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.act(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.act(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * self.res_scale + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs and a scaled shortcut.

    Shape: ``(B, nf, H, W) -> (B, nf, H, W)``.
    """

    def __init__(self, nf: int = 64, gc: int = 32, res_scale: float = 0.2) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * self.res_scale + x


class UpConv(nn.Module):
    """Nearest-neighbour upsampling by ``factor``, then a 3x3 conv and LeakyReLU(0.2).

    Shape: ``(B, cin, H, W) -> (B, cout, fH, fW)``.
    """

    def __init__(self, cin: int, cout: int, factor: int = 2, act: bool = True) -> None:
        super().__init__()
        self.factor = int(factor)
        self.conv = conv3x3(cin, cout)
        self.act = lrelu() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = torch.nn.functional.interpolate(x, scale_factor=self.factor, mode="nearest")
        return self.act(self.conv(x))


class PixelShuffleUp(nn.Module):
    """Conv to ``cout * factor^2`` channels, pixel shuffle, LeakyReLU(0.2).

    Shape: ``(B, cin, H, W) -> (B, cout, fH, fW)``.
    """

    def __init__(self, cin: int, cout: int, factor: int = 2, act: bool = True) -> None:
        super().__init__()
        self.factor = int(factor)
        self.conv = conv3x3(cin, cout * self.factor**2)
        self.shuffle = nn.PixelShuffle(self.factor)
        self.act = lrelu() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shuffle(self.conv(x)))


def upsample_factors(scale: int) -> list[int]:
    """Factors of the upsampling stages: x2 -> [2], x3 -> [3], x4 -> [2, 2], x8 -> [2, 2, 2]."""
    if scale == 1:
        return []
    if scale == 3:
        return [3]
    if scale >= 2 and (scale & (scale - 1)) == 0:
        return [2] * int(math.log2(scale))
    raise ValueError(f"scale must be 1, 3 or a power of two, got scale={scale}")


def make_upsampler(channels: int, scale: int, kind: str = "nearest") -> nn.Sequential:
    """Upsampling stages for ``scale``: ``kind`` is ``"nearest"`` (nearest + conv, as in
    ESRGAN/SPSR) or ``"pixelshuffle"``."""
    cls = {"nearest": UpConv, "pixelshuffle": PixelShuffleUp}.get(kind)
    if cls is None:
        raise ValueError(f"upsampler kind must be 'nearest' or 'pixelshuffle', got {kind!r}")
    return nn.Sequential(*[cls(channels, channels, f) for f in upsample_factors(scale)])


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
            raise SpecError(f"unknown block {block!r}; known: {', '.join(sorted(BLOCKS))} (or pass a factory)")
        return BLOCKS[block], block
    if not callable(block):
        raise SpecError(f"block must be a name ({', '.join(sorted(BLOCKS))}) or a factory(channels), got {block!r}")
    return block, "custom"
