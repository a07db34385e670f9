"""Discriminators for SPSR training: the VGG-style 128 discriminator and a U-Net with
spectral norm. Both register through the ``gradguide_discriminators`` hook (names
``"vgg128"``, ``"vgg128_official"`` and ``"unet_sn"``); build them with
:func:`create_discriminator`.

SPSR uses two instances of the same architecture: ``D_I`` on images and ``D_GM`` on
gradient maps (3 channels each: ``M`` works per channel).
"""
from __future__ import annotations

import functools

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "VGGDiscriminator",
    "UNetDiscriminatorSN",
    "vgg_output_size",
    "create_discriminator",
    "list_discriminators",
    "builtin_discriminators",
]


def vgg_output_size(input_size: int, stages: int = 5) -> int:
    """Spatial size after ``stages`` 4x4 stride-2 pad-1 convolutions: ``floor(n / 2)``
    each (128 -> 4, 132 -> 4, 96 -> 3, 64 -> 2)."""
    n = int(input_size)
    for _ in range(stages):
        n = (n + 2 - 4) // 2 + 1
    return n


class VGGDiscriminator(nn.Module):
    """The VGG-style discriminator of SRGAN/ESRGAN/SPSR ("discriminator_vgg_128").

    Five stages ``(nf, 2nf, 4nf, 8nf, 8nf)``; each a 3x3 stride-1 conv and a 4x4 stride-2
    conv, BatchNorm after every conv except the first, LeakyReLU(0.2); then
    ``Linear(8nf * s * s, 100) -> LeakyReLU -> Linear(100, 1)`` where ``s`` is
    :func:`vgg_output_size` of ``input_size``. Parameter names follow ESRGAN/BasicSR
    (``conv0_0``, ``conv0_1``, ``bn0_1``, ..., ``linear1``, ``linear2``).

    Args:
        in_channels: 3 for images and for (per-channel) gradient maps.
        nf: base width (64 in the paper).
        input_size: training crop size (128; 64 or 96 for CPU smoke runs). Any input whose
            size reduces to the same ``s`` is accepted, e.g. the official 132x132 gradient
            maps with ``input_size=128``.
        bn_conv_bias: give the convs that feed a BatchNorm a bias too, as the official SPSR
            code does (registered as ``"vgg128_official"``). BatchNorm removes such a bias
            from the output, so it only matters for exact reproduction: Adam moves it on
            rounding noise, and official checkpoints carry it.

    Shape: ``(B, in_channels, H, W) -> (B, 1)`` raw logits.
    """

    def __init__(
        self, in_channels: int = 3, nf: int = 64, *, input_size: int = 128, negative_slope: float = 0.2, bn_conv_bias: bool = False
    ) -> None:
        super().__init__()
        if in_channels < 1 or nf < 1:
            raise ValueError(f"VGGDiscriminator: in_channels and nf must be >= 1, got {in_channels}, {nf}")
        self.bn_conv_bias = bool(bn_conv_bias)
        self.feature_size = vgg_output_size(input_size)
        if self.feature_size < 1:
            raise ValueError(f"VGGDiscriminator: input_size must be >= 32, got {input_size}")
        self.in_channels = int(in_channels)
        self.nf = int(nf)
        self.input_size = int(input_size)
        widths = (nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf)
        prev = in_channels
        for i, w in enumerate(widths):
            setattr(self, f"conv{i}_0", nn.Conv2d(prev, w, 3, 1, 1, bias=(i == 0) or self.bn_conv_bias))
            if i > 0:
                setattr(self, f"bn{i}_0", nn.BatchNorm2d(w, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(w, w, 4, 2, 1, bias=self.bn_conv_bias))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(w, affine=True))
            prev = w
        self.linear1 = nn.Linear(widths[-1] * self.feature_size**2, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"VGGDiscriminator: x must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        s = self.feature_size
        if vgg_output_size(x.shape[-2]) != s or vgg_output_size(x.shape[-1]) != s:
            raise ValueError(
                f"VGGDiscriminator: input {tuple(x.shape[-2:])} does not reduce to {s}x{s} "
                f"(built for input_size={self.input_size}); build it with the training crop size"
            )
        for i in range(5):
            x = getattr(self, f"conv{i}_0")(x)
            if i > 0:
                x = getattr(self, f"bn{i}_0")(x)
            x = self.lrelu(x)
            x = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(x)))
        x = self.lrelu(self.linear1(x.flatten(1)))
        return self.linear2(x)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, nf={self.nf}, input_size={self.input_size}" + (", bn_conv_bias=True" if self.bn_conv_bias else "")


class UNetDiscriminatorSN(nn.Module):
    """U-Net discriminator with spectral normalisation (Real-ESRGAN style).

    Three stride-2 encoder convs (``nf -> 2nf -> 4nf -> 8nf``), a bilinear-upsampling
    decoder with additive skips, two refining convs and a 1-channel head: a realness
    logit per pixel. Spectral norm (``torch.nn.utils.parametrizations.spectral_norm``)
    wraps every conv but the first and the last. The decoder upsamples to the skip's
    size, so any ``H, W >= 8`` works (including odd sizes such as 132).

    Args:
        in_channels: 3 for images and gradient maps.
        nf: base width (64 in Real-ESRGAN).
        skip_connection: add the encoder features in the decoder.

    Shape: ``(B, in_channels, H, W) -> (B, 1, H, W)`` raw logits.
    """

    def __init__(self, in_channels: int = 3, nf: int = 64, *, skip_connection: bool = True, negative_slope: float = 0.2) -> None:
        super().__init__()
        if in_channels < 1 or nf < 1:
            raise ValueError(f"UNetDiscriminatorSN: in_channels and nf must be >= 1, got {in_channels}, {nf}")
        self.in_channels = int(in_channels)
        self.nf = int(nf)
        self.skip_connection = bool(skip_connection)
        self.negative_slope = float(negative_slope)
        sn = spectral_norm
        self.conv0 = nn.Conv2d(in_channels, nf, 3, 1, 1)
        self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def _act(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def _up(self, x: Tensor, like: Tensor) -> Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNetDiscriminatorSN: x must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 8:
            raise ValueError(f"UNetDiscriminatorSN: H and W must be >= 8, got {tuple(x.shape[-2:])}")
        x0 = self._act(self.conv0(x))
        x1 = self._act(self.conv1(x0))
        x2 = self._act(self.conv2(x1))
        x3 = self._act(self.conv3(x2))
        x4 = self._act(self.conv4(self._up(x3, x2)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = self._act(self.conv5(self._up(x4, x1)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = self._act(self.conv6(self._up(x5, x0)))
        if self.skip_connection:
            x6 = x6 + x0
        out = self._act(self.conv7(x6))
        out = self._act(self.conv8(out))
        return self.conv9(out)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, nf={self.nf}, skip_connection={self.skip_connection}"


def builtin_discriminators() -> list:
    """The :class:`gradguide.registry.DiscriminatorEntry` objects gradguide registers."""
    from .registry import DiscriminatorEntry

    return [
        DiscriminatorEntry("vgg128", VGGDiscriminator, "VGG-style discriminator (ESRGAN/SPSR), BN, one logit per image"),
        DiscriminatorEntry(
            "vgg128_official",
            functools.partial(VGGDiscriminator, bn_conv_bias=True),
            "vgg128 as the official SPSR code builds it: conv biases before each BatchNorm (exact reproduction)",
        ),
        DiscriminatorEntry("unet_sn", UNetDiscriminatorSN, "U-Net discriminator with spectral norm (Real-ESRGAN), per-pixel logits"),
    ]


def create_discriminator(name: str, **kw) -> nn.Module:
    """Build a registered discriminator, e.g. ``create_discriminator("vgg128", input_size=96)``."""
    from .plugins import registries

    return registries().discriminators.get(name).factory(**kw)


def list_discriminators() -> list[str]:
    """Names of the registered discriminators."""
    from .plugins import registries

    return registries().discriminators.names()
