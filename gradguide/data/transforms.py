"""Paired LR/HR transforms whose randomness comes only from an explicit generator.

Training items must be a pure function of ``(seed, epoch, index)`` so that a killed run
resumes bit-exactly (see ``docs/data.md``): every random draw here takes a
``torch.Generator`` (build one per item with :func:`item_generator`) and nothing touches
the global or worker RNG state.

All functions work on tensors shaped ``(..., H, W)`` (channels and any batch dims
stay in front), so an image and its LR counterpart, or a whole batch, are handled the
same way without per-channel loops.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "item_generator",
    "mod_crop",
    "random_crop_position",
    "paired_random_crop",
    "AugmentFlags",
    "draw_augment",
    "apply_augment",
    "paired_augment",
    "quantize",
    "bicubic_lr_crop",
    "LR_FROM",
    "PairedRandomCrop",
    "PairedAugment",
]


#: where a training LR patch comes from: the whole image's LR, or the HR patch alone
LR_FROM = ("image", "crop")


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``(seed, epoch, index)`` only.

    The three integers are mixed with numpy's ``SeedSequence`` (a stable, well-spread
    hash), so neighbouring items and epochs get unrelated streams.
    """
    for name, v in (("seed", seed), ("epoch", epoch), ("index", index)):
        if int(v) < 0:
            raise ValueError(f"item_generator: {name} must be >= 0, got {v}")
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1, dtype=np.uint64)[0]
    g = torch.Generator()
    g.manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def _randint(high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[0, high)`` (``high >= 1``)."""
    return int(torch.randint(0, high, (1,), generator=generator).item())


def mod_crop(x: Tensor, scale: int) -> Tensor:
    """Crop ``(..., H, W)`` at the bottom/right to multiples of ``scale``."""
    if x.ndim < 2:
        raise ValueError(f"mod_crop: x must have shape (..., H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2] - x.shape[-2] % scale, x.shape[-1] - x.shape[-1] % scale
    return x[..., :h, :w]


def random_crop_position(h: int, w: int, crop: int, generator: torch.Generator, *, border: float = 0.0) -> tuple[int, int]:
    """``(top, left)`` of a uniformly random ``crop x crop`` window inside ``h x w``.

    ``border``: the probability, per axis, that the window is put against one of the
    image's two edges on that axis (either, evenly) instead of anywhere. A network pads
    every edge of its input alike, but at inference only the image's own edges stay in
    the output (tiles overlap), and there the LR was made with the kernel's mirror
    padding: border crops train that case, which uniform crops of large photos almost
    never show. ``0`` draws exactly as before (no extra random numbers)."""
    if crop < 1 or h < crop or w < crop:
        raise ValueError(f"random_crop_position: a {crop}x{crop} crop does not fit in {h}x{w}")
    if not 0.0 <= border <= 1.0:
        raise ValueError(f"random_crop_position: border must be in [0, 1], got {border}")
    top, left = _randint(h - crop + 1, generator), _randint(w - crop + 1, generator)
    if border > 0:
        u = torch.rand(4, generator=generator).tolist()
        if u[0] < border:
            top = 0 if u[1] < 0.5 else h - crop
        if u[2] < border:
            left = 0 if u[3] < 0.5 else w - crop
    return top, left


def paired_random_crop(
    lr: Tensor, hr: Tensor, scale: int, hr_crop: int, generator: torch.Generator, *, border: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Crop aligned patches: ``lr`` ``(..., h, w)`` -> ``(..., c, c)`` and ``hr``
    ``(..., >= h*s, >= w*s)`` -> ``(..., c*s, c*s)``, ``c = hr_crop // scale``.

    The window is drawn on the LR grid, so the HR patch starts at a multiple of ``scale``;
    ``border`` as in :func:`random_crop_position`.
    """
    if hr_crop % scale:
        raise ValueError(f"paired_random_crop: crop {hr_crop} must be divisible by scale {scale}")
    c = hr_crop // scale
    h, w = lr.shape[-2], lr.shape[-1]
    if hr.shape[-2] < h * scale or hr.shape[-1] < w * scale:
        raise ValueError(f"paired_random_crop: HR {tuple(hr.shape[-2:])} is smaller than LR {h}x{w} times {scale}")
    top, left = random_crop_position(h, w, c, generator, border=border)
    return (
        lr[..., top : top + c, left : left + c],
        hr[..., top * scale : (top + c) * scale, left * scale : (left + c) * scale],
    )


class AugmentFlags(NamedTuple):
    """ESRGAN's augmentations: horizontal flip, vertical flip, transpose (with the flips,
    transposing gives all eight 90-degree rotations/reflections)."""

    hflip: bool
    vflip: bool
    transpose: bool


def draw_augment(generator: torch.Generator, *, flip: bool = True, rotate: bool = True) -> AugmentFlags:
    """Draw the three augmentation bits (always three draws, whatever is enabled)."""
    bits = torch.randint(0, 2, (3,), generator=generator).tolist()
    return AugmentFlags(bool(bits[0]) and flip, bool(bits[1]) and rotate, bool(bits[2]) and rotate)


def apply_augment(x: Tensor, flags: AugmentFlags) -> Tensor:
    """Apply ``flags`` to ``(..., H, W)``: flip W, flip H, then swap H and W."""
    if x.ndim < 2:
        raise ValueError(f"apply_augment: x must have shape (..., H, W), got {tuple(x.shape)}")
    if flags.hflip:
        x = x.flip(-1)
    if flags.vflip:
        x = x.flip(-2)
    if flags.transpose:
        x = x.transpose(-2, -1)
    return x.contiguous()


def paired_augment(lr: Tensor, hr: Tensor, generator: torch.Generator, *, flip: bool = True, rotate: bool = True) -> tuple[Tensor, Tensor]:
    """Draw one set of flags and apply it to both ``lr`` and ``hr``."""
    flags = draw_augment(generator, flip=flip, rotate=rotate)
    return apply_augment(lr, flags), apply_augment(hr, flags)


def quantize(x: Tensor, bit_depth: int = 8) -> Tensor:
    """Clip to ``[0, 1]`` and round to ``2**bit_depth - 1`` levels, as saving the image
    to an integer file would."""
    levels = float(2 ** int(bit_depth) - 1)
    return torch.floor(x.clamp(0, 1) * levels + 0.5) / levels


def bicubic_lr_crop(
    hr: Tensor, scale: int, top: int, left: int, lr_crop: int, *, margin: int = 4, lr_from: str = "image"
) -> tuple[Tensor, Tensor]:
    """An LR patch equal to ``imresize(mod_crop(hr), 1/scale)[..., top:top+c, left:left+c]``
    computed from a small window, and its HR patch.

    MATLAB's antialiased bicubic kernel at ``1/scale`` reaches about 2.25 LR pixels, so
    resizing the HR window grown by ``margin`` LR pixels (clipped at the image borders,
    where imresize's mirror padding then matches the full image's) gives the same LR
    values as resizing the whole image, at a fraction of the cost.

    ``lr_from="crop"`` instead downscales the HR patch on its own (``imresize(hr_patch,
    1/scale)``): every edge of the patch is then an image edge as the kernel sees it
    (mirror padding), the case a network meets at a real image's border. With whole-image
    LR (``"image"``) a patch edge has unseen content beyond it, which no inference border
    has, so a network trained only on such patches learns nothing specific to borders.

    Args:
        hr: ``(..., H, W)`` HR image (bottom/right rows beyond a multiple of ``scale`` ignored).
        scale: integer downscaling factor.
        top, left: LR-grid position of the patch.
        lr_crop: LR patch size ``c``; the HR patch is ``c * scale``.

    Returns:
        ``(lr, hr)``: ``(..., c, c)`` and ``(..., c*scale, c*scale)``.
    """
    from .imresize import imresize

    if margin < 3:
        raise ValueError(f"bicubic_lr_crop: margin must be >= 3 LR pixels, got {margin}")
    if lr_from not in LR_FROM:
        raise ValueError(f"bicubic_lr_crop: lr_from must be one of {', '.join(LR_FROM)}, got {lr_from!r}")
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    if top < 0 or left < 0 or top + lr_crop > h or left + lr_crop > w:
        raise ValueError(f"bicubic_lr_crop: LR window {top},{left}+{lr_crop} is outside the {h}x{w} LR grid")
    if lr_from == "crop":
        hr_patch = hr[..., top * scale : (top + lr_crop) * scale, left * scale : (left + lr_crop) * scale]
        return imresize(hr_patch, 1.0 / scale), hr_patch
    t0, l0 = max(0, top - margin), max(0, left - margin)
    t1, l1 = min(h, top + lr_crop + margin), min(w, left + lr_crop + margin)
    window = hr[..., t0 * scale : t1 * scale, l0 * scale : l1 * scale]
    lr = imresize(window, 1.0 / scale)
    lr = lr[..., top - t0 : top - t0 + lr_crop, left - l0 : left - l0 + lr_crop]
    hr_patch = hr[..., top * scale : (top + lr_crop) * scale, left * scale : (left + lr_crop) * scale]
    return lr, hr_patch


class PairedRandomCrop:
    """Callable twin of :func:`paired_random_crop`: ``crop(lr, hr, generator)``."""

    def __init__(self, scale: int, hr_crop: int = 128, *, border: float = 0.0) -> None:
        if hr_crop % scale:
            raise ValueError(f"PairedRandomCrop: crop {hr_crop} must be divisible by scale {scale}")
        self.scale, self.hr_crop, self.border = int(scale), int(hr_crop), float(border)

    def __call__(self, lr: Tensor, hr: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return paired_random_crop(lr, hr, self.scale, self.hr_crop, generator, border=self.border)

    def __repr__(self) -> str:
        return f"PairedRandomCrop(scale={self.scale}, hr_crop={self.hr_crop}, border={self.border:g})"


class PairedAugment:
    """Callable twin of :func:`paired_augment`: ``augment(lr, hr, generator)``."""

    def __init__(self, *, flip: bool = True, rotate: bool = True) -> None:
        self.flip, self.rotate = bool(flip), bool(rotate)

    def __call__(self, lr: Tensor, hr: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return paired_augment(lr, hr, generator, flip=self.flip, rotate=self.rotate)

    def __repr__(self) -> str:
        return f"PairedAugment(flip={self.flip}, rotate={self.rotate})"
