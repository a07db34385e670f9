"""The evaluation as it was before the per-image feature cache (kept as the reference).

Verbatim copies of the per-pair metric functions, NIQE and the per-image evaluation loop
that :mod:`gradguide.eval.features` and :func:`gradguide.eval.evaluate` replaced. They
are slow (a full 11x11 2-D convolution for SSIM, every map recomputed for each metric
and method, the LR remade on each run) and are used only by ``tests/test_eval_fast.py``
(values unchanged to 1e-6) and ``bench/eval_throughput.py`` (old vs new in one run).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops import gradient_map
from .metrics import crop_border, quantize, rgb_to_y
from .niqe import _BLOCK, _gamma_table, _gaussian_window, pristine_params

__all__ = ["psnr_y", "ssim_y", "gmsd", "gradient_l1", "niqe_y", "niqe", "evaluate_images"]


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


def ssim_y(sr: Tensor, hr: Tensor, *, crop: int = 0, quantize: bool = True) -> Tensor:
    """SSIM on Y (Wang et al. 2004 ``ssim_index.m``): 11x11 Gaussian window, sigma 1.5,
    K1 = 0.01, K2 = 0.03, L = 255, statistics over the 'valid' region only.

    Computed by ``kornia.metrics.ssim`` (``padding='valid'``) in float64. Returns ``(B,)``.
    """
    try:
        from kornia.metrics import ssim as _kssim
    except ImportError:  # a machine without kornia (e.g. a bare GPU box): the same 2-D window by hand
        _kssim = _ssim_map_2d

    a, b = _prepare(sr, hr, quantize)
    ya = crop_border(rgb_to_y(a, round_y=quantize), crop)
    yb = crop_border(rgb_to_y(b, round_y=quantize), crop)
    if min(ya.shape[-2:]) < 11:
        raise ValueError(f"ssim_y: image of size {tuple(ya.shape[-2:])} is smaller than the 11x11 window")
    smap = _kssim(ya, yb, window_size=11, max_val=255.0, padding="valid")
    return smap.flatten(1).mean(dim=1)


def _ssim_map_2d(a: Tensor, b: Tensor, window_size: int = 11, max_val: float = 255.0, padding: str = "valid") -> Tensor:
    """What ``kornia.metrics.ssim(..., padding='valid')`` computes: one 2-D 11x11 Gaussian
    convolution (sigma 1.5) per moment, eps 1e-12 in the denominator."""
    x = torch.arange(window_size, dtype=torch.float64, device=a.device) - window_size // 2
    g = torch.exp(-(x * x) / (2 * 1.5**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :])[None, None].to(a.dtype)

    def f(t: Tensor) -> Tensor:
        return F.conv2d(t, k)

    mu1, mu2 = f(a), f(b)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1, s2, s12 = f(a * a) - mu1_sq, f(b * b) - mu2_sq, f(a * b) - mu12
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    return ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2) + 1e-12)


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


def _filter_replicate(im: np.ndarray, win: np.ndarray) -> np.ndarray:
    """``imfilter(im, win, 'replicate')`` (correlation, same size) via torch conv2d."""
    r = win.shape[0] // 2
    t = torch.from_numpy(im)[None, None]
    t = torch.nn.functional.pad(t, (r, r, r, r), mode="replicate")
    k = torch.from_numpy(win)[None, None]
    return torch.nn.functional.conv2d(t, k)[0, 0].numpy()


def _aggd(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``estimateaggdparam`` for each row of ``v`` ``(N, n)``: ``alpha, betal, betar``."""
    from scipy.special import gamma

    gam, r_gam = _gamma_table()
    neg, pos = v < 0, v > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        leftstd = np.sqrt((np.where(neg, v, 0.0) ** 2).sum(1) / neg.sum(1))
        rightstd = np.sqrt((np.where(pos, v, 0.0) ** 2).sum(1) / pos.sum(1))
        gammahat = leftstd / rightstd
        rhat = np.abs(v).mean(1) ** 2 / (v**2).mean(1)
        rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    diff = (r_gam[None, :] - rhatnorm[:, None]) ** 2
    # MATLAB's min returns the first minimum; NaN rows (no negatives, ...) give NaN features
    pos_ = np.argmin(np.where(np.isnan(diff), np.inf, diff), axis=1)
    alpha = gam[pos_]
    alpha = np.where(np.isnan(rhatnorm), np.nan, alpha)
    with np.errstate(invalid="ignore"):
        ratio = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, leftstd * ratio, rightstd * ratio


def _block_features(structdis: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """``computefeature`` on every ``bh x bw`` block: ``(n_blocks, 18)``."""
    from scipy.special import gamma

    h, w = structdis.shape
    nr, nc = h // bh, w // bw
    blocks = structdis[: nr * bh, : nc * bw].reshape(nr, bh, nc, bw).transpose(0, 2, 1, 3).reshape(-1, bh, bw)
    feats = []
    alpha, bl, br = _aggd(blocks.reshape(len(blocks), -1))
    feats += [alpha, (bl + br) / 2]
    flat = blocks.reshape(len(blocks), -1)
    for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        shifted = np.roll(blocks, shift=shift, axis=(1, 2)).reshape(len(blocks), -1)
        alpha, bl, br = _aggd(flat * shifted)
        with np.errstate(invalid="ignore"):
            mean = (br - bl) * (gamma(2.0 / alpha) / gamma(1.0 / alpha))
        feats += [alpha, mean, bl, br]
    return np.stack(feats, axis=1)


def _nancov(x: np.ndarray) -> np.ndarray:
    rows = x[~np.isnan(x).any(axis=1)]
    if len(rows) < 2:
        return np.full((x.shape[1], x.shape[1]), np.nan)
    return np.cov(rows, rowvar=False, ddof=1)


def niqe_y(y: Union[np.ndarray, Tensor], *, mu_pris: Optional[np.ndarray] = None, cov_pris: Optional[np.ndarray] = None) -> float:
    """NIQE of one single-channel image ``(H, W)`` in ``0..255`` (MATLAB's ``computequality``).

    The image needs at least one 96x96 block; lower NIQE means more natural. Returns a
    float (``nan`` if the features are undefined, e.g. a flat image).
    """
    if isinstance(y, Tensor):
        y = y.detach().cpu().numpy()
    im = np.asarray(y, dtype=np.float64)
    if im.ndim == 3 and im.shape[0] == 1:
        im = im[0]
    if im.ndim != 2:
        raise ValueError(f"niqe: expected a single-channel (H, W) image, got shape {im.shape}")
    h, w = im.shape
    nr, nc = h // _BLOCK, w // _BLOCK
    if nr < 1 or nc < 1:
        raise ValueError(f"niqe: image of size {h}x{w} is smaller than one {_BLOCK}x{_BLOCK} block")
    if mu_pris is None or cov_pris is None:
        mu_pris, cov_pris = pristine_params()
    im = im[: nr * _BLOCK, : nc * _BLOCK]
    win = _gaussian_window()
    from ..data.imresize import imresize

    feats = []
    for scale in (1, 2):
        mu = _filter_replicate(im, win)
        sigma = np.sqrt(np.abs(_filter_replicate(im * im, win) - mu * mu))
        structdis = (im - mu) / (sigma + 1.0)
        feats.append(_block_features(structdis, _BLOCK // scale, _BLOCK // scale))
        if scale == 1:
            im = imresize(im, 0.5)
    dist = np.concatenate(feats, axis=1)  # (n_blocks, 36)
    mu_dist = np.nanmean(dist, axis=0)
    cov_dist = _nancov(dist)
    cov = (np.asarray(cov_pris) + cov_dist) / 2.0
    if not np.isfinite(cov).all():
        return float("nan")
    # MATLAB pinv: tolerance max(size(A)) * norm(A) * eps
    inv = np.linalg.pinv(cov, rtol=max(cov.shape) * np.finfo(np.float64).eps)
    d = np.asarray(mu_pris).reshape(-1) - mu_dist
    return float(np.sqrt(d @ inv @ d))


def niqe(img: Tensor, *, crop: int = 0) -> Tensor:
    if img.ndim == 3:
        img = img[None]
    y = crop_border(rgb_to_y(quantize(img)), crop)
    return torch.tensor([niqe_y(y[i, 0]) for i in range(y.shape[0])], dtype=torch.float64)


def evaluate_images(hr_files, scale: int, metrics, net: Optional[torch.nn.Module] = None) -> list[dict]:
    """The old per-image loop of ``gradguide.eval.evaluate`` for one method (``net`` or
    bicubic): read, crop HR to the scale, MATLAB-bicubic LR, SR, then each metric on its own."""
    from ..data.imresize import imresize
    from ..imageio import read_image
    from ..infer.tiling import tiled_forward
    from .evaluate import _t, _u8

    crop = scale
    out = []
    for f in hr_files:
        hr = _u8(read_image(f).rgb)
        h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
        hr = hr[:h, :w]
        lr = imresize(hr, 1.0 / scale)
        if net is None:
            sr = imresize(lr, float(scale))
        else:
            lr_f = torch.from_numpy(lr).permute(2, 0, 1).float().div(255.0)[None]
            o, _ = tiled_forward(net, lr_f, scale=scale, tile=None)
            sr = _u8(o[0])
        sr_t, hr_t = _t(sr), _t(hr)
        sc = {}
        if "PSNR" in metrics:
            sc["PSNR"] = psnr_y(sr_t, hr_t, crop=crop).item()
        if "SSIM" in metrics:
            sc["SSIM"] = ssim_y(sr_t, hr_t, crop=crop).item()
        if "GMSD" in metrics:
            sc["GMSD"] = gmsd(sr_t, hr_t, crop=crop).item()
        if "GradL1" in metrics:
            sc["GradL1"] = gradient_l1(sr_t, hr_t, crop=crop).item()
        if "NIQE" in metrics:
            try:
                sc["NIQE"] = niqe(sr_t, crop=crop).item()
            except ValueError:
                sc["NIQE"] = None
        out.append(sc)
    return out
