"""Full-reference metrics under the standard SR protocol, on torch tensors.

Importing this module is cheap (torch only; kornia, lpips and scipy load on first use),
so the trainer's validation can use it.

Conventions shared by every function here:

* ``sr`` and ``hr`` are ``(B, 3, H, W)`` (or ``(3, H, W)``) tensors. Floating tensors are
  images in ``[0, 1]``; ``uint8`` tensors are taken as they are.
* ``quantize=True`` (the protocol) rounds floating images to ``uint8`` first
  (round half up, clip), exactly what saving a PNG and reading it back does.
* ``crop`` pixels are removed from every border before measuring (the protocol uses
  ``crop = scale``).
* Results are ``(B,)`` float64 tensors, one value per image.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops import gradient_map
from .features import ImageFeatures
from .features import ssim_y as _ssim
from .pixels import crop_border, quantize, rgb_to_y

__all__ = [
    "quantize",
    "rgb_to_y",
    "crop_border",
    "psnr_y",
    "ssim_y",
    "psnr_rgb",
    "gmsd",
    "gradient_l1",
    "ciede2000",
    "psnr_y_frame",
    "frame_bias_y",
    "frame_stats",
    "PSNRY",
    "SSIMY",
]


def _as_batch(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    return x


def _prepare(sr: Tensor, hr: Tensor, quantize_: bool) -> tuple[Tensor, Tensor]:
    sr = _as_batch(sr, "sr")
    hr = _as_batch(hr, "hr")
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    if quantize_:
        return quantize(sr), quantize(hr)
    sr = sr.to(torch.float64) * (1.0 if sr.dtype == torch.uint8 else 255.0)
    hr = hr.to(torch.float64) * (1.0 if hr.dtype == torch.uint8 else 255.0)
    return sr, hr


def _psnr(a: Tensor, b: Tensor, peak: float = 255.0) -> Tensor:
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(peak**2 / mse)  # inf for identical images


def psnr_y(sr: Tensor, hr: Tensor, *, crop: int = 0, quantize: bool = True) -> Tensor:
    """PSNR on the BT.601 Y channel (peak 255), the protocol of SR papers. Returns ``(B,)``."""
    a, b = _prepare(sr, hr, quantize)
    ya = crop_border(rgb_to_y(a, round_y=quantize), crop)
    yb = crop_border(rgb_to_y(b, round_y=quantize), crop)
    return _psnr(ya, yb)


def psnr_rgb(sr: Tensor, hr: Tensor, *, crop: int = 0, quantize: bool = True) -> Tensor:
    """PSNR over the three RGB channels (peak 255). Returns ``(B,)``."""
    a, b = _prepare(sr, hr, quantize)
    return _psnr(crop_border(a, crop), crop_border(b, crop))


def ssim_y(sr: Tensor, hr: Tensor, *, crop: int = 0, quantize: bool = True) -> Tensor:
    """SSIM on Y (Wang et al. 2004 ``ssim_index.m``): 11x11 Gaussian window, sigma 1.5,
    K1 = 0.01, K2 = 0.03, L = 255, statistics over the 'valid' region only.

    The Gaussian is applied separably in float64 (:mod:`gradguide.eval.features`); it
    equals ``kornia.metrics.ssim`` (``padding='valid'``) to 1e-6. Returns ``(B,)``.
    """
    a, b = _prepare(sr, hr, quantize)
    return _ssim(ImageFeatures(a, crop, rounded=quantize), ImageFeatures(b, crop, rounded=quantize))


def _luma_0299(x: Tensor) -> Tensor:
    coef = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=x.device).view(3, 1, 1)
    return (x * coef).sum(dim=-3, keepdim=True)


def gmsd(sr: Tensor, hr: Tensor, *, crop: int = 0, quantize: bool = True, c: float = 170.0) -> Tensor:
    """Gradient Magnitude Similarity Deviation (Xue et al., TIP 2014), as their ``GMSD.m``.

    Luma ``0.299 R + 0.587 G + 0.114 B`` on ``0..255``; 2x2 average then every second
    pixel; Prewitt magnitudes (``/3``, zero padding); ``GMS = (2 m1 m2 + c) / (m1^2 + m2^2 + c)``
    with ``c = 170``; score = standard deviation (N - 1) of the GMS map. Lower is better,
    0 for identical images. Returns ``(B,)``.
    """
    a, b = _prepare(sr, hr, quantize)
    ya = crop_border(_luma_0299(a), crop)
    yb = crop_border(_luma_0299(b), crop)
    both = torch.cat([ya, yb], dim=0)  # fold reference and distorted into one batch
    # conv2(Y, ones(2)/4, 'same') then Y(1:2:end, 1:2:end): pairs (i, i+1), zero past the end
    both = F.pad(both, (0, 1, 0, 1))
    both = F.avg_pool2d(both, kernel_size=2, stride=1)[..., ::2, ::2]
    k = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=torch.float64, device=both.device) / 3.0
    kernels = torch.stack([k, k.t()])[:, None]  # (2, 1, 3, 3): dx, dy
    g = F.conv2d(both, kernels, padding=1)
    mag = torch.sqrt(g.pow(2).sum(dim=1, keepdim=True))
    m1, m2 = mag[: ya.shape[0]], mag[ya.shape[0]:]
    gms = (2 * m1 * m2 + c) / (m1.pow(2) + m2.pow(2) + c)
    return gms.flatten(1).std(dim=1, unbiased=True)


def gradient_l1(sr: Tensor, hr: Tensor, *, crop: int = 0, quantize: bool = True) -> Tensor:
    """Mean absolute difference of the SPSR gradient maps ``|M(SR) - M(HR)|`` (Eq. 2).

    Computed on RGB in ``[0, 1]`` with :func:`gradguide.ops.gradient_map` (zero padding,
    as the official SPSR operator) *before* the border crop, so the crop removes the
    padded border. Lower is better. Returns ``(B,)``.
    """
    a, b = _prepare(sr, hr, quantize)
    ga = gradient_map(a / 255.0, padding="zeros", eps=0.0)
    gb = gradient_map(b / 255.0, padding="zeros", eps=0.0)
    return crop_border((ga - gb).abs(), crop).flatten(1).mean(dim=1)


def ciede2000(sr: Tensor, hr: Tensor, *, crop: int = 0, quantize: bool = True) -> Tensor:
    """Mean CIEDE2000 colour difference (Sharma et al. 2005) between ``sr`` and ``hr``.

    Both images are taken as sRGB (D65), converted to CIELAB and compared per pixel with
    :func:`skimage.color.deltaE_ciede2000` (the reference formula, vectorised), then
    averaged over the image after the border crop. 0 means identical colours; about 1
    is a just-noticeable difference; a global tint shows here while every Y-channel
    metric stays blind to it. Lower is better. Returns ``(B,)``.
    """
    from skimage.color import deltaE_ciede2000, rgb2lab

    a, b = _prepare(sr, hr, quantize)
    a, b = crop_border(a, crop), crop_border(b, crop)
    out = []
    for x, y in zip(a, b):  # per image: skimage works on (H, W, 3) arrays
        la = rgb2lab((x / 255.0).permute(1, 2, 0).cpu().numpy())
        lb = rgb2lab((y / 255.0).permute(1, 2, 0).cpu().numpy())
        out.append(float(deltaE_ciede2000(la, lb).mean()))
    return torch.tensor(out, dtype=torch.float64)


def psnr_y_frame(sr: Tensor, hr: Tensor, *, width: int = 8, inner: bool = False, quantize: bool = True) -> Tensor:
    """PSNR on Y over the outermost ``width`` pixels of the image (``inner=False``), or
    over everything inside that frame (``inner=True``).

    Comparing the two against bicubic's shows border artifacts (a bright or dark frame)
    that the protocol's border crop hides. Returns ``(B,)``.
    """
    frame, inside, _ = frame_stats(sr, hr, width=width, quantize=quantize)
    return inside if inner else frame


def frame_bias_y(sr: Tensor, hr: Tensor, *, width: int = 8, quantize: bool = True) -> Tensor:
    """Mean signed error ``Y(SR) - Y(HR)`` over the outermost ``width`` pixels, in levels
    of 255: a bright frame along the borders is positive, a dark one negative; an error
    that is only noise averages to about 0. Returns ``(B,)``."""
    return frame_stats(sr, hr, width=width, quantize=quantize)[2]


def frame_stats(sr: Tensor, hr: Tensor, *, width: int = 8, quantize: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """``(PSNR-Y on the frame, PSNR-Y inside it, mean signed Y error on the frame)`` from
    one conversion to Y: :func:`psnr_y_frame` (both) and :func:`frame_bias_y` at once.
    Each ``(B,)``."""
    a, b = _prepare(sr, hr, quantize)
    ya, yb = rgb_to_y(a, round_y=quantize), rgb_to_y(b, round_y=quantize)
    h, w = ya.shape[-2:]
    if h <= 2 * width or w <= 2 * width:
        raise ValueError(f"a {width}-pixel frame needs an image larger than {2 * width}x{2 * width}, got {h}x{w}")
    mask = torch.ones(h, w, dtype=torch.bool, device=ya.device)
    mask[width:-width, width:-width] = False
    d = ya - yb
    sq = d.pow(2)

    def psnr(k: Tensor) -> Tensor:
        return 10.0 * torch.log10(255.0**2 / sq[..., k].flatten(1).mean(dim=1))

    return psnr(mask), psnr(~mask), d[..., mask].flatten(1).mean(dim=1)


class PSNRY(torch.nn.Module):
    """Module twin of :func:`psnr_y`. Shape: ``(B, 3, H, W) x 2 -> (B,)``."""

    def __init__(self, crop: int = 0, quantize: bool = True) -> None:
        super().__init__()
        self.crop, self.quantize = int(crop), bool(quantize)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return psnr_y(sr, hr, crop=self.crop, quantize=self.quantize)


class SSIMY(torch.nn.Module):
    """Module twin of :func:`ssim_y`. Shape: ``(B, 3, H, W) x 2 -> (B,)``."""

    def __init__(self, crop: int = 0, quantize: bool = True) -> None:
        super().__init__()
        self.crop, self.quantize = int(crop), bool(quantize)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return ssim_y(sr, hr, crop=self.crop, quantize=self.quantize)
