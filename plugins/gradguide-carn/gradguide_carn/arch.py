"""CARN (Ahn et al. 2018), single-scale, with the official CARN-pytorch module names.

Data flow (``(B, 3, H, W) -> (B, 3, sH, sW)``)::

    x - mean -> entry -> o0
    o_k = c_k(cat(o0, b_1(o0), ..., b_k(o_{k-1})))     cascading blocks, k = 1..3
    exit(upsample(o3)) + mean

Each block ``b_k`` cascades three residual units the same way. ``upsample`` is
``[conv(64 -> 4*64), ReLU, PixelShuffle(2)] * log2(s)`` (or one x3 stage); ``exit``
maps the HR features to RGB, so CARN has an HR feature before its final conv, which
is what SPSR's fusion replaces.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gradguide.plugin import GuidanceSpec, Tap

__all__ = ["CARN", "carn_spec"]

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class BasicBlock(nn.Module):
    """``relu(conv_k(x))`` (the cascade's 1x1 fusion convs)."""

    def __init__(self, cin: int, cout: int, ksize: int = 1, pad: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, ksize, 1, pad), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ResidualBlock(nn.Module):
    """``relu(x + conv(relu(conv(x))))``. Shape preserved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + x)


class Block(nn.Module):
    """Cascading block: three residual units with 1x1 fusion convs. Shape preserved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.b1, self.b2, self.b3 = ResidualBlock(channels), ResidualBlock(channels), ResidualBlock(channels)
        self.c1 = BasicBlock(channels * 2, channels)
        self.c2 = BasicBlock(channels * 3, channels)
        self.c3 = BasicBlock(channels * 4, channels)

    def forward(self, x: Tensor) -> Tensor:
        c0 = o0 = x
        c1 = torch.cat([c0, self.b1(o0)], 1)
        o1 = self.c1(c1)
        c2 = torch.cat([c1, self.b2(o1)], 1)
        o2 = self.c2(c2)
        c3 = torch.cat([c2, self.b3(o2)], 1)
        return self.c3(c3)


class _UpsampleBlock(nn.Module):
    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        m: list[nn.Module] = []
        if scale in (2, 4, 8):
            for _ in range(int(math.log2(scale))):
                m += [nn.Conv2d(channels, 4 * channels, 3, 1, 1), nn.ReLU(inplace=True), nn.PixelShuffle(2)]
        elif scale == 3:
            m += [nn.Conv2d(channels, 9 * channels, 3, 1, 1), nn.ReLU(inplace=True), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"CARN supports scale 2, 3, 4 or 8, got scale={scale}")
        self.body = nn.Sequential(*m)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class UpsampleBlock(nn.Module):
    """Single-scale upsampler (official name: ``upsample.up.body.N``)."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.up = _UpsampleBlock(channels, scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(x)


class CARN(nn.Module):
    """CARN, single-scale. ``(B, 3, H, W) -> (B, 3, sH, sW)``; inputs in [0, 1]."""

    def __init__(self, scale: int = 4, channels: int = 64) -> None:
        super().__init__()
        self.scale, self.channels = int(scale), int(channels)
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.entry = nn.Conv2d(3, channels, 3, 1, 1)
        self.b1, self.b2, self.b3 = Block(channels), Block(channels), Block(channels)
        self.c1 = BasicBlock(channels * 2, channels)
        self.c2 = BasicBlock(channels * 3, channels)
        self.c3 = BasicBlock(channels * 4, channels)
        self.upsample = UpsampleBlock(channels, self.scale)
        self.exit = nn.Conv2d(channels, 3, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        c0 = o0 = self.entry(x - self.mean)
        c1 = torch.cat([c0, self.b1(o0)], 1)
        o1 = self.c1(c1)
        c2 = torch.cat([c1, self.b2(o1)], 1)
        o2 = self.c2(c2)
        c3 = torch.cat([c2, self.b3(o2)], 1)
        o3 = self.c3(c3)
        return self.exit(self.upsample(o3)) + self.mean

    @property
    def config(self) -> dict:
        return {"scale": self.scale, "channels": self.channels}


def carn_spec(model: CARN) -> GuidanceSpec:
    """Taps: the three cascade outputs ``c1, c2, c3`` (LR); paper fusion replaces ``exit``
    (its input is the upsampled HR feature); LR fusion adds to ``c3`` (before upsampling)."""
    c = model.channels
    return GuidanceSpec(
        taps=(Tap("c1", c), Tap("c2", c), Tap("c3", c)),
        replace="exit", hr_channels=c, scale=model.scale, lr_feature="c3", lr_channels=c,
    )
