"""NIQE (Mittal et al. 2013) reproducing the reference MATLAB release ``niqe_release``.

``computequality.m`` with 96x96 blocks, no overlap, two scales, and the pristine model
``modelparameters.mat`` (shipped here as ``niqe_pris_params.npz``: ``mu_pris_param``
(1, 36), ``cov_pris_param`` (36, 36)). The steps, each as in MATLAB:

1. crop the image to whole 96x96 blocks (top-left kept);
2. at each scale: local mean ``mu`` and deviation ``sigma`` with a 7x7 Gaussian
   (sigma 7/6, normalised, ``imfilter(..., 'replicate')``); MSCN ``(I - mu) / (sigma + 1)``;
3. per block (96 px at scale 1, 48 at scale 2): an AGGD fit of the MSCN values
   (alpha by table look-up on ``gam = 0.2:0.001:10``) and of the four products with the
   block circularly shifted by (0,1), (1,0), (1,1), (-1,1): 18 features per scale;
4. next scale: ``imresize(I, 0.5)`` (MATLAB bicubic, antialiased, see
   :mod:`gradguide.data.imresize`);
5. ``nanmean``/``nancov`` over blocks, ``pinv`` of the averaged covariance (MATLAB's
   tolerance), Mahalanobis-like distance to the pristine model.

Everything is vectorised over blocks (numpy float64). Checked against the published
MATLAB value for the baboon test image (5.72957338): see ``tests/test_niqe.py`` and
``docs/evaluation.md``.
"""
from __future__ import annotations

import functools
from importlib import resources
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["niqe", "niqe_y", "pristine_params", "NIQE"]

_BLOCK = 96


@functools.lru_cache(maxsize=1)
def pristine_params() -> tuple[np.ndarray, np.ndarray]:
    """``(mu (36,), cov (36, 36))`` of the pristine MVG model shipped with the package."""
    with resources.files("gradguide.eval").joinpath("niqe_pris_params.npz").open("rb") as fh:
        d = np.load(fh)
        return d["mu_pris_param"].reshape(-1).astype(np.float64), d["cov_pris_param"].astype(np.float64)


@functools.lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import gamma

    gam = 0.2 + 0.001 * np.arange(9801, dtype=np.float64)  # MATLAB 0.2:0.001:10
    r_gam = gamma(2.0 / gam) ** 2 / (gamma(1.0 / gam) * gamma(3.0 / gam))
    return gam, r_gam


def _gaussian_window() -> np.ndarray:
    # fspecial('gaussian', 7, 7/6), normalised to sum 1
    x = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7.0 / 6.0) ** 2))
    return g / g.sum()


def _filter_replicate(im: np.ndarray, win: np.ndarray) -> np.ndarray:
    """``imfilter(im, win, 'replicate')`` (correlation, same size) via torch conv2d.

    Kept as one 2-D convolution on purpose: where the image is flat, ``sigma`` is the
    square root of a rounding residue and the AGGD fits of those blocks follow that
    noise, so a separable filter (equal to rounding) moves NIQE by up to ~0.02 there.
    """
    r = win.shape[0] // 2
    t = torch.from_numpy(im)[None, None]
    t = torch.nn.functional.pad(t, (r, r, r, r), mode="replicate")
    k = torch.from_numpy(win)[None, None]
    return torch.nn.functional.conv2d(t, k)[0, 0].numpy()


def _nearest(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``argmin((table - x)^2)`` for each ``x`` (first minimum, like MATLAB's ``min``),
    for a strictly increasing ``table``: a binary search and the two neighbours, instead
    of the whole ``(len(x), len(table))`` difference matrix. Non-finite ``x`` gives 0,
    as the full search does (every difference is inf or NaN there)."""
    n = len(table)
    i = np.clip(np.searchsorted(table, np.where(np.isfinite(x), x, 0.0)), 1, n - 1)
    lo, hi = table[i - 1], table[i]
    with np.errstate(invalid="ignore"):
        pick_lo = (lo - x) ** 2 <= (hi - x) ** 2
    return np.where(np.isfinite(x), np.where(pick_lo, i - 1, i), 0)


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
    pos_ = _nearest(r_gam, rhatnorm)
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
    """NIQE of RGB images under the protocol: Y of MATLAB ``rgb2ycbcr`` (rounded) of the
    image rounded to ``uint8``, ``crop`` pixels removed from each border.

    Args:
        img: ``(B, 3, H, W)`` or ``(3, H, W)``, float in ``[0, 1]`` or ``uint8``.

    Returns:
        ``(B,)`` float64.
    """
    from .pixels import crop_border, quantize, rgb_to_y

    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"niqe: img must have shape (B, 3, H, W), got {tuple(img.shape)}")
    y = crop_border(rgb_to_y(quantize(img)), crop)
    return torch.tensor([niqe_y(y[i, 0]) for i in range(y.shape[0])], dtype=torch.float64)


class NIQE(torch.nn.Module):
    """Module twin of :func:`niqe`. Shape: ``(B, 3, H, W) -> (B,)``."""

    def __init__(self, crop: int = 0) -> None:
        super().__init__()
        self.crop = int(crop)

    def forward(self, img: Tensor) -> Tensor:
        return niqe(img, crop=self.crop)
