"""Per-image features shared by the metrics, each computed once, and the metric registry.

:func:`gradguide.eval.evaluate` measures several metrics on each (SR, HR) pair, and the
same HR image against every method. The quantities the metrics are built from (the
image rounded to ``uint8`` values, its Y channel, the SSIM local moments, the GMSD and
SPSR gradient maps) are computed here **once per image**, lazily, on the image's
device, and shared:

* ``ImageFeatures(hr)`` is built once per HR image and reused for every method;
* the SR images of all methods for one HR image go in one batch ``(M, 3, H, W)``;
* every pair metric is a function ``f(sr: ImageFeatures, hr: ImageFeatures) -> (M,)``
  in :data:`PAIR_METRICS`; a no-reference metric ``f(img: ImageFeatures) -> (M,)`` is
  in :data:`NR_METRICS`. Adding a metric is one registered function, e.g.::

      @pair_metric("PSNR-RGB")
      def _psnr_rgb(sr, hr):
          return psnr_from(sr.rgb_cropped, hr.rgb_cropped)

The values equal :mod:`gradguide.eval._reference` (the per-pair implementation used
before) to within 1e-6: ``tests/test_eval_fast.py`` checks it. The SSIM Gaussian
(11 taps, sigma 1.5) is applied separably, as two 1-D passes, instead of one 11x11
2-D convolution; NIQE's 7x7 Gaussian likewise.
"""
from __future__ import annotations

from functools import cached_property
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops import gradient_map
from .niqe import niqe_y
from .pixels import crop_border

__all__ = [
    "ImageFeatures",
    "PAIR_METRICS",
    "NR_METRICS",
    "pair_metric",
    "nr_metric",
    "gaussian_1d",
    "filter_valid",
    "psnr_from",
]

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_C1, SSIM_C2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
SSIM_EPS = 1e-12  # kornia.metrics.ssim's default, kept so values match it to rounding

_Y_COEF = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)


def gaussian_1d(n: int, sigma: float, *, dtype=torch.float64, device=None) -> Tensor:
    """Sampled Gaussian of ``n`` taps normalised to sum 1 (``fspecial`` is its outer product)."""
    x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def filter_valid(x: Tensor, g: Tensor, *, band: int = 32) -> Tensor:
    """Separable correlation of ``(..., H, W)`` with ``outer(g, g)``, 'valid' region only.

    Two 1-D passes of in-place multiply-adds over shifted views: ``2n`` fused passes over
    the image instead of the ``n^2`` of a 2-D window, in the input's dtype on its device.
    On the CPU the output is made in bands of ``band`` rows, so that both passes of a
    band stay in cache (twice as fast on 1024x768; the same operations, the same bits).
    """
    n = g.numel()
    w = [float(v) for v in g.tolist()]
    oh, ow = x.shape[-2] - n + 1, x.shape[-1] - n + 1
    if x.device.type != "cpu":
        band = oh
    out = torch.empty(*x.shape[:-2], oh, ow, dtype=x.dtype, device=x.device)
    for r0 in range(0, oh, band):
        r1 = min(oh, r0 + band)
        slab = x[..., r0 : r1 + n - 1, :]
        o = slab[..., 0:ow] * w[0]
        for k in range(1, n):
            o.add_(slab[..., k : k + ow], alpha=w[k])
        p = out[..., r0:r1, :]
        torch.mul(o[..., 0 : r1 - r0, :], w[0], out=p)
        for k in range(1, n):
            p.add_(o[..., k : k + r1 - r0, :], alpha=w[k])
    return out


def _crop(x: Tensor, crop: int) -> Tensor:
    return crop_border(x, crop)


def psnr_from(a: Tensor, b: Tensor, peak: float = 255.0) -> Tensor:
    """PSNR per batch item of two ``(B, ...)`` tensors (``b`` may have batch 1)."""
    d = a - b
    mse = d.mul_(d).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(peak**2 / mse)


class ImageFeatures:
    """A batch of images ``(B, 3, H, W)`` as values ``0..255`` (float64), with the maps
    the metrics share, each computed on first use and then kept.

    Args:
        rgb255: float64 ``(B, 3, H, W)`` in ``0..255`` (rounded already, see
            :func:`gradguide.eval.metrics.quantize`), on the device to measure on.
        crop: border pixels removed before measuring (the protocol: the scale).
        rounded: whether the images were rounded to ``uint8`` values (then Y is rounded
            too, like MATLAB ``rgb2ycbcr`` on ``uint8``).
    """

    def __init__(self, rgb255: Tensor, crop: int, *, rounded: bool = True) -> None:
        if rgb255.ndim != 4 or rgb255.shape[1] != 3:
            raise ValueError(f"ImageFeatures: expected (B, 3, H, W), got {tuple(rgb255.shape)}")
        self.rgb = rgb255.to(torch.float64)
        self.crop = int(crop)
        self.rounded = bool(rounded)

    @classmethod
    def from_uint8(cls, arr, crop: int, device=None) -> "ImageFeatures":
        """From an ``(H, W, 3)`` uint8 numpy array or a ``(B, 3, H, W)`` uint8 tensor."""
        t = arr if isinstance(arr, Tensor) else torch.from_numpy(arr).permute(2, 0, 1)[None]
        return cls(t.to(device=device).to(torch.float64), crop)

    @property
    def batch(self) -> int:
        return self.rgb.shape[0]

    @cached_property
    def y_full(self) -> Tensor:
        """Y of BT.601 (MATLAB ``rgb2ycbcr``), ``(B, 1, H, W)``, before the crop."""
        r, g, b = self.rgb[:, 0:1], self.rgb[:, 1:2], self.rgb[:, 2:3]
        y = r * _Y_COEF[0]
        tmp = torch.mul(g, _Y_COEF[1])
        y.add_(tmp).add_(torch.mul(b, _Y_COEF[2], out=tmp)).add_(16.0)
        return y.add_(0.5).floor_() if self.rounded else y

    @cached_property
    def y(self) -> Tensor:
        """:attr:`y_full` with the border crop."""
        return _crop(self.y_full, self.crop)

    @cached_property
    def rgb_cropped(self) -> Tensor:
        return _crop(self.rgb, self.crop)

    @cached_property
    def ssim_moments(self) -> tuple[Tensor, Tensor]:
        """``(mu, E[y^2])`` of Y under the 11x11 Gaussian window, 'valid' region."""
        y = self.y
        if min(y.shape[-2:]) < SSIM_WINDOW:
            raise ValueError(f"ssim_y: image of size {tuple(y.shape[-2:])} is smaller than the 11x11 window")
        g = gaussian_1d(SSIM_WINDOW, SSIM_SIGMA, device=y.device)
        both = filter_valid(torch.cat([y, y * y], dim=1), g)
        return both[:, 0:1], both[:, 1:2]

    @cached_property
    def gmsd_magnitude(self) -> Tensor:
        """GMSD's Prewitt magnitude of the 2x2-averaged, decimated luma (after the crop)."""
        coef = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=self.rgb.device).view(3, 1, 1)
        luma = _crop((self.rgb * coef).sum(dim=-3, keepdim=True), self.crop)
        luma = F.avg_pool2d(F.pad(luma, (0, 1, 0, 1)), kernel_size=2, stride=1)[..., ::2, ::2]
        k = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=torch.float64, device=luma.device) / 3.0
        g = F.conv2d(luma, torch.stack([k, k.t()])[:, None], padding=1)
        return torch.sqrt(g.pow(2).sum(dim=1, keepdim=True))

    @cached_property
    def gradient(self) -> Tensor:
        """SPSR gradient map ``M(I)`` of RGB in ``[0, 1]`` (zero padding, no eps), cropped."""
        return _crop(gradient_map(self.rgb / 255.0, padding="zeros", eps=0.0), self.crop)


PairMetric = Callable[[ImageFeatures, ImageFeatures], Tensor]
NRMetric = Callable[[ImageFeatures], Tensor]
#: name -> ``f(sr, hr) -> (B,)``; ``hr`` may have batch 1 against ``sr``'s ``B``
PAIR_METRICS: dict[str, PairMetric] = {}
#: name -> ``f(img) -> (B,)`` (no-reference)
NR_METRICS: dict[str, NRMetric] = {}


def pair_metric(name: str) -> Callable[[PairMetric], PairMetric]:
    def deco(fn: PairMetric) -> PairMetric:
        PAIR_METRICS[name] = fn
        return fn

    return deco


def nr_metric(name: str) -> Callable[[NRMetric], NRMetric]:
    def deco(fn: NRMetric) -> NRMetric:
        NR_METRICS[name] = fn
        return fn

    return deco


@pair_metric("PSNR")
def psnr_y(sr: ImageFeatures, hr: ImageFeatures) -> Tensor:
    return psnr_from(sr.y, hr.y)


@pair_metric("SSIM")
def ssim_y(sr: ImageFeatures, hr: ImageFeatures) -> Tensor:
    mu_a, e_aa = sr.ssim_moments
    mu_b, e_bb = hr.ssim_moments
    g = gaussian_1d(SSIM_WINDOW, SSIM_SIGMA, device=sr.y.device)
    # the SSIM map, in place where a temporary is ours (the cached moments stay intact)
    cov = filter_valid(sr.y * hr.y, g)  # E[ab]
    mu_ab = mu_a * mu_b
    aa, bb = mu_a * mu_a, mu_b * mu_b
    num = cov.sub_(mu_ab).mul_(2.0).add_(SSIM_C2)  # 2 sigma_ab + C2
    num.mul_(mu_ab.mul_(2.0).add_(SSIM_C1))  # x (2 mu_a mu_b + C1)
    den = (e_aa - aa).add_(e_bb - bb).add_(SSIM_C2)  # sigma_a^2 + sigma_b^2 + C2
    den.mul_(aa.add_(bb).add_(SSIM_C1)).add_(SSIM_EPS)  # x (mu_a^2 + mu_b^2 + C1)
    return num.div_(den).flatten(1).mean(dim=1)


@pair_metric("GMSD")
def gmsd(sr: ImageFeatures, hr: ImageFeatures, c: float = 170.0) -> Tensor:
    m1, m2 = sr.gmsd_magnitude, hr.gmsd_magnitude
    gms = (2 * m1 * m2 + c) / (m1.pow(2) + m2.pow(2) + c)
    return gms.flatten(1).std(dim=1, unbiased=True)


@pair_metric("GradL1")
def gradient_l1(sr: ImageFeatures, hr: ImageFeatures) -> Tensor:
    return (sr.gradient - hr.gradient).abs().flatten(1).mean(dim=1)


@nr_metric("NIQE")
def niqe(img: ImageFeatures) -> Tensor:
    y = img.y.detach().cpu()
    return torch.tensor([niqe_y(y[i, 0]) for i in range(img.batch)], dtype=torch.float64)



def bicubic_upscale(lr, scale: int):
    """``imresize(lr, scale)`` for an ``(h, w, 3)`` uint8 array (MATLAB bicubic, uint8
    rounding after each pass), bit-identical, in float32 when that is exact.

    For x2 and x4 every weight of MATLAB's resize matrix is a dyadic rational with at
    most 12 fractional bits, so each product of a ``uint8`` pixel and a weight, and every
    partial sum (below 2^9 in magnitude), fits float32's 24-bit mantissa exactly: the
    float32 matrix products equal the float64 ones bit for bit, at about half the cost.
    Other scales (x3: weights in thirds; x8: 15 bits) go to :func:`imresize`."""
    import numpy as np

    from ..data.imresize import imresize, resize_matrix

    h, w = lr.shape[:2]
    mh = resize_matrix(h, h * scale, float(scale))
    mw = resize_matrix(w, w * scale, float(scale))
    if lr.dtype != np.uint8 or any(not torch.equal(torch.round(m * 2**12), m * 2**12) for m in (mh, mw)):
        return imresize(lr, float(scale))
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1).to(torch.float32)
    x = torch.floor(torch.matmul(mh.to(torch.float32), x).add_(0.5)).clamp_(0, 255)  # rows first, as MATLAB
    x = torch.floor(torch.matmul(x, mw.to(torch.float32).t()).add_(0.5)).clamp_(0, 255)
    return x.permute(1, 2, 0).to(torch.uint8).numpy()
