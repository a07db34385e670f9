"""Real-ESRGAN's second-order degradation model, batched, on the training device.

Real-world SR models (Real-ESRGAN, BasicSR, neosr, traiNNer-redux) train on LR images
synthesised from each HR crop by a random chain of degradations (Wang et al., ICCVW 2021,
Sec. 3). This module is that chain written on torch and kornia from the paper's
description and the published option files, without basicsr (whose pip release no longer
imports on current torchvision)::

    hr (B,3,H,W) --[usm?]--> blur k1 -> resize s1 (area|bilinear|bicubic, up/down/keep)
        -> Gaussian|Poisson noise (grey|colour) -> JPEG q1                 first stage
        -> blur k2 (p = second_blur_prob) -> resize to H/scale * s2 -> noise -> then
           either  [resize to H/scale, sinc, JPEG q2]  or  [JPEG q2, resize, sinc]
        -> round to 8 bits  -> lr (B,3,H/scale,W/scale)                    second stage

Everything runs on the batch at once: the blur kernels differ per item but go through one
grouped convolution (:func:`kornia.filters.filter2d`), noise and JPEG qualities are
per-item tensors, JPEG is :func:`kornia.enhance.jpeg_codec_differentiable` (see
``docs/real-world.md`` for why and how it differs from libjpeg).

Randomness (exact resume): every draw comes from generators built from one 63-bit
*key per item* (:func:`item_key` of ``(seed, epoch, index)``), never from the global RNG.
Per-item draws: kernel type/size/shape, second blur and final sinc on/off, noise kind,
strength, grey or colour, the noise fields themselves, JPEG qualities. The resize
choices and the final order change the tensor shape, so, as in Real-ESRGAN, they are
shared by the batch; they come from a generator seeded by the batch's keys. An item's
LR is therefore a pure function of its key and the keys of its batch mates, both of
which the resumable sampler reproduces.

Kernel formulas (grid ``x, y in [-k//2, k//2]``, ``Sigma = R(theta) diag(sx^2, sy^2) R^T``,
``q = [x y] Sigma^-1 [x y]^T``), each normalised to sum one:

* Gaussian ``exp(-q / 2)``; generalized Gaussian ``exp(-(q)^beta / 2)``;
  plateau ``1 / (q^beta + 1)``; isotropic variants have ``sx = sy``, ``theta = 0``;
* sinc (circular low-pass) ``omega J1(omega r) / (2 pi r)``, ``omega^2 / (4 pi)`` at
  ``r = 0``, with ``r`` measured from the kernel centre.

A kernel of size ``k < K`` is computed on the ``K x K`` grid and zeroed outside the
central ``k x k`` window before normalising: exactly a ``k x k`` kernel zero-padded to
``K``, which is what lets one convolution serve every item.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Iterator, Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "DegradationConfig",
    "DegradationParams",
    "item_key",
    "batch_keys",
    "mesh_grid",
    "sigma_matrix",
    "anisotropic_kernels",
    "sinc_kernels",
    "crop_kernels",
    "random_kernels",
    "blur",
    "resize",
    "gaussian_noise",
    "poisson_noise",
    "jpeg",
    "usm_sharp",
    "draw_params",
    "degrade",
    "Degradation",
    "KeyedItems",
]

KernelType = Literal["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
KERNEL_TYPES: tuple[str, ...] = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
ResizeMode = Literal["area", "bilinear", "bicubic"]
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic")
#: the largest blur/sinc kernel accepted (Real-ESRGAN uses 21; bigger costs a lot on the HR crop)
MAX_KERNEL_SIZE = 31
_KEY_SALT = 0x5EED_DE9A  # keeps degradation streams apart from the crop/flip stream of the same item


# --------------------------------------------------------------------------- parameters


def _six() -> list[KernelType]:
    return list(KERNEL_TYPES)


@dataclass
class DegradationConfig:
    """The ``[degradation]`` recipe section: Real-ESRGAN's options under their own names.

    Defaults are the published ones (``options/train_realesrgan_x4plus.yml`` of
    xinntao/Real-ESRGAN, identical in ``train_realesrnet_x4plus.yml``). Ranges are
    ``[low, high]``, sampled uniformly; ``resize_prob`` is ``[up, down, keep]``.
    ``enabled`` turns the pipeline on in training (off: the dataset's bicubic LR).
    """

    enabled: bool = False
    gt_usm: bool = True  # sharpen the HR with USM first (Real-ESRGAN's l1/percep_gt_usm)
    # first stage
    blur_kernel_size: int = 21  # the largest kernel; sizes are drawn from the odd 7..blur_kernel_size
    kernel_list: list[KernelType] = field(default_factory=_six)
    kernel_prob: list[float] = field(default_factory=lambda: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03])
    sinc_prob: float = 0.1
    blur_sigma: list[float] = field(default_factory=lambda: [0.2, 3.0])
    betag_range: list[float] = field(default_factory=lambda: [0.5, 4.0])
    betap_range: list[float] = field(default_factory=lambda: [1.0, 2.0])
    resize_prob: list[float] = field(default_factory=lambda: [0.2, 0.7, 0.1])
    resize_range: list[float] = field(default_factory=lambda: [0.15, 1.5])
    gaussian_noise_prob: float = 0.5
    noise_range: list[float] = field(default_factory=lambda: [1.0, 30.0])  # sigma, in 8-bit levels
    poisson_scale_range: list[float] = field(default_factory=lambda: [0.05, 3.0])
    gray_noise_prob: float = 0.4
    jpeg_range: list[float] = field(default_factory=lambda: [30.0, 95.0])
    # second stage
    second_blur_prob: float = 0.8
    blur_kernel_size2: int = 21
    kernel_list2: list[KernelType] = field(default_factory=_six)
    kernel_prob2: list[float] = field(default_factory=lambda: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03])
    sinc_prob2: float = 0.1
    blur_sigma2: list[float] = field(default_factory=lambda: [0.2, 1.5])
    betag_range2: list[float] = field(default_factory=lambda: [0.5, 4.0])
    betap_range2: list[float] = field(default_factory=lambda: [1.0, 2.0])
    resize_prob2: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.3])
    resize_range2: list[float] = field(default_factory=lambda: [0.3, 1.2])
    gaussian_noise_prob2: float = 0.5
    noise_range2: list[float] = field(default_factory=lambda: [1.0, 25.0])
    poisson_scale_range2: list[float] = field(default_factory=lambda: [0.05, 2.5])
    gray_noise_prob2: float = 0.4
    jpeg_range2: list[float] = field(default_factory=lambda: [30.0, 95.0])
    # final
    final_sinc_prob: float = 0.8

    def problems(self) -> Iterator[tuple[str, str]]:
        """Yield ``(key, why)`` for every bad value (the recipe turns the first into a
        one-line error naming ``degradation.<key>``)."""

        def num(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def rng(key: str, lo: float, hi: float) -> Iterator[tuple[str, str]]:
            v = getattr(self, key)
            if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(num(x) for x in v)):
                yield key, f"must be [low, high], got {v!r}"
            elif not lo <= v[0] <= v[1] <= hi:
                yield key, f"must satisfy {lo:g} <= low <= high <= {hi:g}, got {list(v)!r}"

        for key in ("sinc_prob", "gaussian_noise_prob", "gray_noise_prob", "second_blur_prob", "sinc_prob2",
                    "gaussian_noise_prob2", "gray_noise_prob2", "final_sinc_prob"):
            v = getattr(self, key)
            if not (num(v) and 0.0 <= v <= 1.0):
                yield key, f"is a probability and must be in [0, 1], got {v!r}"
        for key in ("blur_kernel_size", "blur_kernel_size2"):
            v = getattr(self, key)
            if not (isinstance(v, int) and not isinstance(v, bool)) or v % 2 == 0 or not 7 <= v <= MAX_KERNEL_SIZE:
                yield key, f"must be an odd integer in [7, {MAX_KERNEL_SIZE}], got {v!r}"
        for suffix in ("", "2"):
            kl, kp = getattr(self, "kernel_list" + suffix), getattr(self, "kernel_prob" + suffix)
            bad = [k for k in kl if k not in KERNEL_TYPES] if isinstance(kl, list) else [kl]
            if not isinstance(kl, list) or not kl or bad:
                yield "kernel_list" + suffix, f"must be a non-empty list of {', '.join(KERNEL_TYPES)}, got {kl!r}"
            elif not (isinstance(kp, list) and len(kp) == len(kl) and all(num(p) and 0 <= p <= 1 for p in kp)):
                yield "kernel_prob" + suffix, f"must be {len(kl)} probabilities in [0, 1] (one per kernel_list{suffix} entry), got {kp!r}"
            elif abs(sum(kp) - 1.0) > 1e-4:
                yield "kernel_prob" + suffix, f"must sum to 1, got {sum(kp):g}"
            rp = getattr(self, "resize_prob" + suffix)
            if not (isinstance(rp, list) and len(rp) == 3 and all(num(p) and 0 <= p <= 1 for p in rp)):
                yield "resize_prob" + suffix, f"must be three probabilities [up, down, keep] in [0, 1], got {rp!r}"
            elif abs(sum(rp) - 1.0) > 1e-4:
                yield "resize_prob" + suffix, f"must sum to 1, got {sum(rp):g}"
            yield from rng("blur_sigma" + suffix, 1e-3, 50.0)
            yield from rng("betag_range" + suffix, 1e-2, 20.0)
            yield from rng("betap_range" + suffix, 1e-2, 20.0)
            yield from rng("noise_range" + suffix, 0.0, 255.0)
            yield from rng("poisson_scale_range" + suffix, 0.0, 100.0)
            yield from rng("jpeg_range" + suffix, 1.0, 100.0)
        yield from rng("resize_range", 1e-2, 16.0)
        yield from rng("resize_range2", 1e-2, 16.0)

    def validate(self) -> "DegradationConfig":
        """Raise ``ValueError("degradation.<key> ...")`` on the first bad value."""
        for key, why in self.problems():
            raise ValueError(f"degradation.{key} {why}")
        return self


@dataclass(frozen=True)
class DegradationParams:
    """Every random choice of one batch, drawn by :func:`draw_params` (CPU tensors).

    Per item (leading dim B): ``kernel1``/``kernel2``/``sinc`` ``(B, K, K)`` (identity
    kernels where a step is off), ``gaussian1/2`` (bool: Gaussian, else Poisson),
    ``sigma1/2`` (Gaussian sigma in [0, 1] units), ``poisson1/2`` (Poisson scale),
    ``gray1/2`` (bool), ``quality1/2`` (JPEG), ``noise_seeds`` ``(B,)`` int64 for the
    noise fields. Per batch: ``scale1/scale2`` (resize factors), ``mode1/mode2/mode3``
    (resize modes of the two stages and the final resize), ``sinc_last`` (final order:
    resize, sinc, JPEG; else JPEG, resize, sinc).
    """

    kernel1: Tensor
    kernel2: Tensor
    sinc: Tensor
    gaussian1: Tensor
    sigma1: Tensor
    poisson1: Tensor
    gray1: Tensor
    quality1: Tensor
    gaussian2: Tensor
    sigma2: Tensor
    poisson2: Tensor
    gray2: Tensor
    quality2: Tensor
    noise_seeds: Tensor
    scale1: float
    scale2: float
    mode1: str
    mode2: str
    mode3: str
    sinc_last: bool


# --------------------------------------------------------------------------- keys


def item_key(seed: int, epoch: int, index: int) -> int:
    """The 63-bit degradation key of one training item, from ``(seed, epoch, index)`` only."""
    for name, v in (("seed", seed), ("epoch", epoch), ("index", index)):
        if int(v) < 0:
            raise ValueError(f"item_key: {name} must be >= 0, got {v}")
    state = np.random.SeedSequence([int(seed), int(epoch), int(index), _KEY_SALT]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & 0x7FFF_FFFF_FFFF_FFFF


def batch_keys(n: int, seed: int = 0) -> Tensor:
    """``(n,)`` int64 keys for items ``0..n-1`` of epoch 0 (for tools that degrade a folder)."""
    return torch.tensor([item_key(seed, 0, i) for i in range(n)], dtype=torch.int64)


def _generator(key: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(key) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


# --------------------------------------------------------------------------- kernels


def mesh_grid(size: int, *, dtype: torch.dtype = torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """``(x, y)`` coordinate grids ``(size, size)`` centred on the middle pixel
    (``x`` varies along columns, ``y`` along rows); ``size`` must be odd."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"mesh_grid: size must be odd and >= 1, got {size}")
    ax = torch.arange(size, dtype=dtype, device=device) - size // 2
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    return x, y


def sigma_matrix(sigma_x: Tensor, sigma_y: Tensor, theta: Tensor) -> Tensor:
    """Covariances ``R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T``, shape ``(B, 2, 2)``."""
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    d = torch.diag_embed(torch.stack([sigma_x * sigma_x, sigma_y * sigma_y], -1))
    return rot @ d @ rot.transpose(-1, -2)


def anisotropic_kernels(
    size: int,
    sigma_x: Tensor,
    sigma_y: Tensor,
    theta: Tensor,
    beta: Optional[Tensor] = None,
    *,
    shape: Literal["gaussian", "generalized", "plateau"] = "gaussian",
) -> Tensor:
    """Bivariate Gaussian / generalized Gaussian / plateau kernels ``(B, size, size)``,
    normalised to sum one (formulas in the module docstring). ``beta`` is needed for the
    generalized and plateau shapes; all parameters are ``(B,)`` tensors."""
    x, y = mesh_grid(size, dtype=sigma_x.dtype, device=sigma_x.device)
    inv = torch.linalg.inv(sigma_matrix(sigma_x, sigma_y, theta))  # (B, 2, 2)
    q = (inv[:, 0, 0, None, None] * x * x + (inv[:, 0, 1] + inv[:, 1, 0])[:, None, None] * x * y
         + inv[:, 1, 1, None, None] * y * y)
    if shape == "gaussian":
        k = torch.exp(-0.5 * q)
    elif beta is None:
        raise ValueError(f"anisotropic_kernels: shape {shape!r} needs beta")
    elif shape == "generalized":
        k = torch.exp(-0.5 * q.pow(beta[:, None, None]))
    elif shape == "plateau":
        k = 1.0 / (q.pow(beta[:, None, None]) + 1.0)
    else:
        raise ValueError(f"anisotropic_kernels: unknown shape {shape!r}")
    return k / k.sum(dim=(-2, -1), keepdim=True)


def sinc_kernels(size: int, cutoff: Tensor) -> Tensor:
    """Circular low-pass (2-D sinc) kernels ``(B, size, size)`` with cutoff ``omega``
    (``(B,)``, radians per pixel): ``omega J1(omega r) / (2 pi r)``, normalised."""
    x, y = mesh_grid(size, dtype=cutoff.dtype, device=cutoff.device)
    r = torch.sqrt(x * x + y * y)
    w = cutoff[:, None, None]
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    k = w * torch.special.bessel_j1(w * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r > 0, k, w * w / (4 * math.pi))
    return k / k.sum(dim=(-2, -1), keepdim=True)


def crop_kernels(kernels: Tensor, sizes: Tensor) -> Tensor:
    """Zero each ``(K, K)`` kernel outside its central ``sizes[b] x sizes[b]`` window and
    renormalise: the same as a ``sizes[b]``-sized kernel zero-padded to ``K``."""
    K = kernels.shape[-1]
    x, y = mesh_grid(K, dtype=kernels.dtype, device=kernels.device)
    half = (sizes.to(kernels.dtype)[:, None, None] - 1) / 2
    k = kernels * ((x.abs() <= half) & (y.abs() <= half)).to(kernels.dtype)
    return k / k.sum(dim=(-2, -1), keepdim=True)


def _delta(n: int, size: int) -> Tensor:
    k = torch.zeros(n, size, size, dtype=torch.float64)
    k[:, size // 2, size // 2] = 1.0
    return k


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=g, dtype=torch.float64))


def _beta(g: torch.Generator, lo: float, hi: float) -> float:
    """Real-ESRGAN's shape draw: half the time in [lo, 1], else in [1, hi]."""
    return _uniform(g, lo, 1.0) if _uniform(g, 0, 1) < 0.5 else _uniform(g, 1.0, hi)


def _choice(g: torch.Generator, probs: Sequence[float]) -> int:
    return int(torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=g))


def random_kernels(
    gens: Sequence[torch.Generator],
    *,
    max_size: int,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    sinc_prob: float,
    sigma: Sequence[float],
    betag: Sequence[float],
    betap: Sequence[float],
) -> Tensor:
    """One random blur kernel per generator, as Real-ESRGAN's dataset draws them: a size
    from the odd ``7..max_size``, then a sinc (``sinc_prob``; cutoff in [pi/3, pi] below
    size 13, else [pi/5, pi]) or a kernel type from ``kernel_list`` with its sigmas,
    rotation in [-pi, pi] and shape ``beta``. Returns ``(B, max_size, max_size)`` float64."""
    sizes_all = list(range(7, max_size + 1, 2))
    n = len(gens)
    sx, sy, th, be, cut = (torch.zeros(n, dtype=torch.float64) for _ in range(5))
    size = torch.zeros(n, dtype=torch.int64)
    kind = ["iso"] * n
    for i, g in enumerate(gens):  # scalar draws per item (cheap, CPU)
        size[i] = sizes_all[int(torch.randint(len(sizes_all), (), generator=g))]
        if _uniform(g, 0, 1) < sinc_prob:
            kind[i] = "sinc"
            cut[i] = _uniform(g, math.pi / 3, math.pi) if size[i] < 13 else _uniform(g, math.pi / 5, math.pi)
            continue
        t = kernel_list[_choice(g, kernel_prob)]
        kind[i] = t
        sx[i] = _uniform(g, *sigma)
        if t.endswith("aniso"):
            sy[i] = _uniform(g, *sigma)
            th[i] = _uniform(g, -math.pi, math.pi)
        else:
            sy[i] = sx[i]
        if t.startswith("generalized"):
            be[i] = _beta(g, *betag)
        elif t.startswith("plateau"):
            be[i] = _beta(g, *betap)
    one = torch.ones(n, dtype=torch.float64)
    sx, sy, be = torch.where(sx > 0, sx, one), torch.where(sy > 0, sy, one), torch.where(be > 0, be, one)
    family = [("gaussian" if k in ("iso", "aniso") else "generalized" if k.startswith("gen") else "plateau" if k.startswith("plat") else "sinc") for k in kind]
    out = torch.zeros(n, max_size, max_size, dtype=torch.float64)
    for shape in ("gaussian", "generalized", "plateau"):  # one batched call per family
        sel = torch.tensor([f == shape for f in family])
        if sel.any():
            out[sel] = anisotropic_kernels(max_size, sx[sel], sy[sel], th[sel], be[sel], shape=shape)  # type: ignore[arg-type]
    sel = torch.tensor([f == "sinc" for f in family])
    if sel.any():
        # the sinc is defined on its own k x k grid; same centre, so compute at max_size and crop
        out[sel] = sinc_kernels(max_size, torch.where(sel, cut, torch.full_like(cut, math.pi))[sel])
    return crop_kernels(out, size)


# --------------------------------------------------------------------------- operators


def blur(x: Tensor, kernels: Tensor) -> Tensor:
    """Filter each image of ``x`` ``(B, C, H, W)`` with its own kernel ``(B, k, k)``
    (reflect borders, as Real-ESRGAN's ``filter2D``; replicate when the image is no
    larger than the kernel's radius, where reflection is undefined): one grouped
    convolution (:func:`kornia.filters.filter2d`), no loop over items or channels."""
    from kornia.filters import filter2d

    k = kernels.to(device=x.device, dtype=x.dtype)
    if k.ndim != 3 or k.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"blur: kernels must be (B, k, k) or (1, k, k) for a batch of {x.shape[0]}, got {tuple(k.shape)}")
    border = "reflect" if min(x.shape[-2:]) > k.shape[-1] // 2 else "replicate"
    return filter2d(x, k, border_type=border, normalized=False)


def resize(x: Tensor, *, scale: Optional[float] = None, size: Optional[tuple[int, int]] = None, mode: str = "bicubic") -> Tensor:
    """``F.interpolate`` to ``size`` or by ``scale`` (``area``/``bilinear``/``bicubic``,
    no antialiasing, as Real-ESRGAN); a no-op when the size does not change."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize: mode must be one of {RESIZE_MODES}, got {mode!r}")
    if size is None:
        if scale is None:
            raise ValueError("resize: give scale= or size=")
        size = (max(1, int(x.shape[-2] * scale)), max(1, int(x.shape[-1] * scale)))
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(x.shape[-2:]) == size:
        return x
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **kw)


def _per_item(gens: Sequence[torch.Generator], fn) -> Tensor:
    return torch.stack([fn(g) for g in gens])


def _device_generators(seeds: Tensor, device: torch.device) -> list[torch.Generator]:
    out = []
    for s in seeds.tolist():
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        out.append(g)
    return out


def gaussian_noise(x: Tensor, sigma: Tensor, gray: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
    """Additive Gaussian noise, ``(B, C, H, W)``: ``sigma[b] * n`` with ``n ~ N(0, 1)``
    drawn per pixel and channel (colour) or per pixel and shared by channels (``gray[b]``).
    ``gens`` are per-item generators on ``x.device``. Returns the noise, not ``x + noise``."""
    B, C, H, W = x.shape
    n = _per_item(gens, lambda g: torch.randn(C, H, W, generator=g, device=x.device, dtype=x.dtype))
    n1 = _per_item(gens, lambda g: torch.randn(1, H, W, generator=g, device=x.device, dtype=x.dtype))
    gray_b = gray.to(device=x.device, dtype=torch.bool).view(B, 1, 1, 1)
    return torch.where(gray_b, n1.expand(B, C, H, W), n) * sigma.to(device=x.device, dtype=x.dtype).view(B, 1, 1, 1)


def _levels(q: Tensor) -> Tensor:
    """``2^ceil(log2(#distinct 8-bit values))`` per item of an integer tensor ``(B, ...)``."""
    B = q.shape[0]
    present = torch.zeros(B, 256, device=q.device, dtype=torch.float32)
    present.scatter_(1, q.reshape(B, -1), 1.0)
    n = present.sum(1).clamp_min(1)
    return torch.exp2(torch.ceil(torch.log2(n)))


def poisson_noise(x: Tensor, scale: Tensor, gray: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
    """Poisson (shot) noise as Real-ESRGAN: round ``x`` to 8 bits, ``v = 2^ceil(log2(#levels))``,
    ``noise = (Poisson(x v) / v - x) * scale[b]``; grey items use the noise of the
    BT.601 luma, shared by channels. Returns the noise."""
    from kornia.color import rgb_to_grayscale

    B, C, H, W = x.shape
    img = torch.clamp(torch.round(x * 255.0), 0, 255) / 255.0
    v = _levels(torch.round(img * 255).long()).to(x.dtype).view(B, 1, 1, 1)
    rates = img * v
    out = torch.stack([torch.poisson(rates[i], generator=g) for i, g in enumerate(gens)]) / v
    noise = out - img
    gray_b = gray.to(device=x.device, dtype=torch.bool)
    if bool(gray_b.any()):
        lum = rgb_to_grayscale(x) if C == 3 else x.mean(1, keepdim=True)
        lum = torch.clamp(torch.round(lum * 255.0), 0, 255) / 255.0
        vg = _levels(torch.round(lum * 255).long()).to(x.dtype).view(B, 1, 1, 1)
        rg = lum * vg
        outg = torch.stack([torch.poisson(rg[i], generator=g) for i, g in enumerate(gens)]) / vg
        noise = torch.where(gray_b.view(B, 1, 1, 1), (outg - lum).expand(B, C, H, W), noise)
    return noise * scale.to(device=x.device, dtype=x.dtype).view(B, 1, 1, 1)


def jpeg(x: Tensor, quality: Tensor) -> Tensor:
    """JPEG-compress and decode each image at its own quality (``(B,)`` in [1, 100]) with
    :func:`kornia.enhance.jpeg_codec_differentiable` (libjpeg's quality scaling and
    tables, 4:2:0 chroma, 8x8 DCT, all batched on the device). Input is clamped to [0, 1]."""
    from kornia.enhance import jpeg_codec_differentiable

    if x.shape[1] != 3:
        raise ValueError(f"jpeg: needs RGB images (B, 3, H, W), got {tuple(x.shape)}")
    q = quality.to(device=x.device, dtype=x.dtype).reshape(-1)
    return jpeg_codec_differentiable(x.clamp(0, 1), q).clamp(0, 1)


def usm_sharp(x: Tensor, *, weight: float = 0.5, threshold: float = 10.0, radius: int = 50) -> Tensor:
    """Unsharp masking as Real-ESRGAN's ``USMSharp``: a Gaussian blur of size
    ``radius + 1`` (OpenCV's sigma for that size; two separable passes),
    ``x + weight * (x - blur)`` where
    ``|x - blur| > threshold / 255``, blended through a blurred mask; clipped to [0, 1]."""
    from kornia.filters import filter2d_separable

    if radius % 2 == 0:
        radius += 1
    sigma = 0.3 * ((radius - 1) * 0.5 - 1) + 0.8  # cv2.getGaussianKernel(radius, 0)
    ax = torch.arange(radius, dtype=torch.float64) - radius // 2
    g1 = torch.exp(-(ax * ax) / (2 * sigma * sigma))
    g1 = (g1 / g1.sum())[None].to(device=x.device, dtype=x.dtype)
    border = "reflect" if min(x.shape[-2:]) > radius // 2 else "replicate"

    def gauss(t: Tensor) -> Tensor:  # the 2-D Gaussian is separable: two 1-D passes
        return filter2d_separable(t, g1, g1, border_type=border)

    blurred = gauss(x)
    residual = x - blurred
    mask = (residual.abs() * 255 > threshold).to(x.dtype)
    soft = gauss(mask)
    sharp = (x + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * x


# --------------------------------------------------------------------------- pipeline


def draw_params(cfg: DegradationConfig, keys: Tensor) -> DegradationParams:
    """Draw every random choice for a batch from its item keys ``(B,)`` (int64)."""
    keys = torch.as_tensor(keys, dtype=torch.int64).reshape(-1).cpu()
    n = int(keys.numel())
    if n < 1:
        raise ValueError("draw_params: need at least one key")
    gens = [_generator(int(k)) for k in keys.tolist()]
    K1, K2 = cfg.blur_kernel_size, cfg.blur_kernel_size2
    kernel1 = random_kernels(gens, max_size=K1, kernel_list=cfg.kernel_list, kernel_prob=cfg.kernel_prob, sinc_prob=cfg.sinc_prob,
                             sigma=cfg.blur_sigma, betag=cfg.betag_range, betap=cfg.betap_range)
    kernel2 = random_kernels(gens, max_size=K2, kernel_list=cfg.kernel_list2, kernel_prob=cfg.kernel_prob2, sinc_prob=cfg.sinc_prob2,
                             sigma=cfg.blur_sigma2, betag=cfg.betag_range2, betap=cfg.betap_range2)
    blur2 = torch.tensor([_uniform(g, 0, 1) < cfg.second_blur_prob for g in gens])
    kernel2 = torch.where(blur2[:, None, None], kernel2, _delta(n, K2))
    # final sinc: size from the odd 7..K1, cutoff in [pi/3, pi]; identity otherwise
    sizes = list(range(7, K1 + 1, 2))
    fs_on = torch.tensor([_uniform(g, 0, 1) < cfg.final_sinc_prob for g in gens])
    fs_size = torch.tensor([sizes[int(torch.randint(len(sizes), (), generator=g))] for g in gens])
    fs_cut = torch.tensor([_uniform(g, math.pi / 3, math.pi) for g in gens], dtype=torch.float64)
    sinc = crop_kernels(sinc_kernels(K1, fs_cut), fs_size)
    sinc = torch.where(fs_on[:, None, None], sinc, _delta(n, K1))

    def noise(gp: float, nr: Sequence[float], pr: Sequence[float], grp: float):
        gauss = torch.tensor([_uniform(g, 0, 1) < gp for g in gens])
        sigma = torch.tensor([_uniform(g, *nr) / 255.0 for g in gens], dtype=torch.float64)
        pscale = torch.tensor([_uniform(g, *pr) for g in gens], dtype=torch.float64)
        gray = torch.tensor([_uniform(g, 0, 1) < grp for g in gens])
        return gauss, sigma, pscale, gray

    g1, s1, p1, gr1 = noise(cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range, cfg.gray_noise_prob)
    q1 = torch.tensor([_uniform(g, *cfg.jpeg_range) for g in gens], dtype=torch.float64)
    g2, s2, p2, gr2 = noise(cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2, cfg.gray_noise_prob2)
    q2 = torch.tensor([_uniform(g, *cfg.jpeg_range2) for g in gens], dtype=torch.float64)
    seeds = torch.stack([torch.randint(0, 2**62, (), generator=g) for g in gens])

    # shape-changing choices are shared by the batch: a generator seeded by all its keys
    bstate = np.random.SeedSequence([int(k) for k in keys.tolist()] + [_KEY_SALT]).generate_state(1, dtype=np.uint64)[0]
    gb = _generator(int(bstate))

    def scale_of(probs: Sequence[float], rr: Sequence[float]) -> float:
        which = _choice(gb, probs)
        return _uniform(gb, 1.0, rr[1]) if which == 0 else _uniform(gb, rr[0], 1.0) if which == 1 else 1.0

    sc1 = scale_of(cfg.resize_prob, cfg.resize_range)
    m1 = RESIZE_MODES[int(torch.randint(3, (), generator=gb))]
    sc2 = scale_of(cfg.resize_prob2, cfg.resize_range2)
    m2 = RESIZE_MODES[int(torch.randint(3, (), generator=gb))]
    m3 = RESIZE_MODES[int(torch.randint(3, (), generator=gb))]
    sinc_last = _uniform(gb, 0, 1) < 0.5
    return DegradationParams(kernel1, kernel2, sinc, g1, s1, p1, gr1, q1, g2, s2, p2, gr2, q2, seeds, sc1, sc2, m1, m2, m3, sinc_last)


def _noise(x: Tensor, gauss: Tensor, sigma: Tensor, pscale: Tensor, gray: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
    """Per item: Gaussian where ``gauss[b]`` else Poisson, added and clipped to [0, 1]."""
    B = x.shape[0]
    gb = gauss.to(device=x.device).view(B, 1, 1, 1)
    n = torch.zeros_like(x)
    if bool(gauss.any()):
        n = torch.where(gb, gaussian_noise(x, sigma, gray, gens), n)
    if not bool(gauss.all()):
        n = torch.where(gb, n, poisson_noise(x, pscale, gray, gens))
    return (x + n).clamp(0, 1)


def degrade(hr: Tensor, cfg: DegradationConfig, keys: Tensor, *, scale: int, params: Optional[DegradationParams] = None) -> Tensor:
    """Real-ESRGAN's second-order degradation of a batch of HR crops.

    Args:
        hr: ``(B, 3, H, W)`` in [0, 1] on any device; ``H``, ``W`` divisible by ``scale``.
        cfg: the parameters (:class:`DegradationConfig`).
        keys: ``(B,)`` int64 item keys (:func:`item_key`); the output is a pure function
            of ``hr`` and the keys.
        scale: the SR factor; the LR is ``(B, 3, H // scale, W // scale)``.
        params: pre-drawn choices (default: :func:`draw_params` of ``keys``).

    Returns:
        The LR batch, rounded to 8-bit levels, in [0, 1], same dtype and device as ``hr``.
        The HR is not changed (apply :func:`usm_sharp` to it yourself if ``cfg.gt_usm``).
    """
    if hr.ndim != 4 or hr.shape[1] != 3:
        raise ValueError(f"degrade: hr must be (B, 3, H, W), got {tuple(hr.shape)}")
    B, _, H, W = hr.shape
    if H % scale or W % scale:
        raise ValueError(f"degrade: HR size {H}x{W} is not divisible by scale {scale}")
    p = params if params is not None else draw_params(cfg, keys)
    if p.kernel1.shape[0] != B:
        raise ValueError(f"degrade: {p.kernel1.shape[0]} keys for a batch of {B}")
    gens = _device_generators(p.noise_seeds, hr.device)
    lr_hw = (H // scale, W // scale)
    x = hr.float()
    # first stage
    x = blur(x, p.kernel1)
    x = resize(x, scale=p.scale1, mode=p.mode1)
    x = _noise(x, p.gaussian1, p.sigma1, p.poisson1, p.gray1, gens)
    x = jpeg(x, p.quality1)
    # second stage
    x = blur(x, p.kernel2)
    x = resize(x, size=(int(lr_hw[0] * p.scale2), int(lr_hw[1] * p.scale2)), mode=p.mode2)
    x = _noise(x, p.gaussian2, p.sigma2, p.poisson2, p.gray2, gens)
    if p.sinc_last:
        x = blur(resize(x, size=lr_hw, mode=p.mode3), p.sinc)
        x = jpeg(x, p.quality2)
    else:
        x = jpeg(x, p.quality2)
        x = blur(resize(x, size=lr_hw, mode=p.mode3), p.sinc)
    x = torch.clamp(torch.round(x * 255.0) / 255.0, 0, 1)
    return x.to(hr.dtype)


class Degradation(nn.Module):
    """Module twin of :func:`degrade`: ``Degradation(cfg, scale)(hr, keys) -> (lr, hr')``,
    where ``hr'`` is the USM-sharpened HR when ``cfg.gt_usm`` (else ``hr``). Holds no
    parameters and no device."""

    def __init__(self, cfg: DegradationConfig, scale: int) -> None:
        super().__init__()
        self.cfg = dataclasses.replace(cfg).validate()
        self.scale = int(scale)

    @torch.no_grad()
    def forward(self, hr: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        target = usm_sharp(hr) if self.cfg.gt_usm else hr
        return degrade(target, self.cfg, keys, scale=self.scale), target

    def extra_repr(self) -> str:
        return f"scale={self.scale}, gt_usm={self.cfg.gt_usm}"


class KeyedItems(Dataset):
    """Training items with their degradation key: ``(lr, hr) -> (lr, hr, key)``.

    ``key`` is :func:`item_key` of ``(seed, epoch, index)`` as a 0-d int64 tensor, so the
    DataLoader collates it into the ``(B,)`` keys :func:`degrade` takes on the device.
    ``set_epoch`` is passed on to the wrapped dataset (the resumable sampler calls it)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        item = self.dataset[index]
        return (*item[:2], torch.tensor(item_key(self.seed, self.epoch, index), dtype=torch.int64))
