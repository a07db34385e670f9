"""Training and validation datasets for super-resolution.

* :class:`HRFolderDataset`: HR images (a folder or in-memory images); each item is a
  random HR crop and its LR made on the fly with MATLAB-compatible bicubic
  (:func:`gradguide.data.imresize.imresize`).
* :class:`PairedFolderDataset`: LR and HR folders paired by file stem.
* :class:`ValidationDataset`: whole images, HR cropped to a multiple of the scale.
* :func:`demo_images` / :func:`skimage_dataset`: scikit-image's bundled photos, for the
  offline demo.

Items are tuples ``(lr, hr)`` of float32 tensors in ``[0, 1]``, shaped ``(3, h, w)`` and
``(3, h*scale, w*scale)``. Greyscale images are replicated to three channels, the alpha
channel of RGBA images is dropped, 16-bit images keep their precision.

A training item is a pure function of ``(seed, epoch, index)``: the crop position and
the flips/rotation are drawn from a per-item generator
(:func:`gradguide.data.transforms.item_generator`), never from the global RNG, so a
resumed run sees exactly the same batches (call :meth:`set_epoch` each epoch).

Files are scanned at construction from their headers only (Pillow), so building a
dataset over many large PNGs is quick: a missing or empty folder is a
:class:`~gradguide.errors.DataError`; a corrupt file, or an image smaller than the crop,
is named in a warning and skipped. A file that fails to decode later is named in a
warning and replaced by the next good item (deterministically).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError, ImageReadError
from ..imageio import read_header
from . import transforms as T

__all__ = [
    "ImageRecord",
    "ImageSource",
    "scan_images",
    "HRFolderDataset",
    "PairedFolderDataset",
    "ValidationDataset",
    "demo_images",
    "skimage_dataset",
    "DEMO_TRAIN",
    "DEMO_EVAL",
]

#: A folder path, or in-memory images: a sequence of ``(name, image)`` pairs or a mapping
#: ``name -> image``; an image is a numpy array ``(H, W)`` / ``(H, W, C)`` (uint8, uint16,
#: bool or float in [0, 1]) or a float tensor ``(C, H, W)`` in [0, 1], C in 1, 3, 4.
ImageSource = Union[str, os.PathLike, Sequence[tuple[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class ImageRecord:
    """One image known to a dataset: ``name`` (file stem or given name), ``size``
    ``(H, W)``, ``bit_depth``, and either ``path`` (decoded on demand) or ``image`` (an
    in-memory ``(3, H, W)`` float32 tensor)."""

    name: str
    size: tuple[int, int]
    bit_depth: int = 8
    path: Optional[Path] = None
    image: Optional[Tensor] = None


# --------------------------------------------------------------------------- scanning


def _header(path: Path) -> tuple[tuple[int, int], int]:
    """``((H, W), bit_depth)`` from the file header (:func:`gradguide.imageio.read_header`,
    PNG checksums verified); raises ``ImageReadError``."""
    h = read_header(path, verify=True)
    return h.size, h.bit_depth


def _array_to_rgb(image: Any, name: str) -> tuple[Tensor, int]:
    """In-memory image -> ``((3, H, W) float32 in [0, 1], bit_depth)``."""
    if isinstance(image, Tensor):
        t = image.detach().to("cpu")
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
            raise DataError(f"{name}: in-memory tensor must be (C, H, W) with C in 1, 3, 4, got {tuple(image.shape)}")
        if t.dtype == torch.uint8:
            t, depth = t.float() / 255.0, 8
        elif t.is_floating_point():
            t, depth = t.float().clamp(0, 1), 8
        else:
            raise DataError(f"{name}: in-memory tensor must be float or uint8, got {t.dtype}")
    else:
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
            raise DataError(f"{name}: in-memory array must be (H, W) or (H, W, C) with C in 1..4, got {arr.shape}")
        if arr.shape[2] == 2:  # grey + alpha
            arr = arr[:, :, :1]
        if arr.dtype == np.bool_:
            t, depth = torch.from_numpy(arr.astype(np.float32)), 8
        elif arr.dtype == np.uint8:
            t, depth = torch.from_numpy(arr.astype(np.float32) / 255.0), 8
        elif arr.dtype == np.uint16:
            t, depth = torch.from_numpy(arr.astype(np.float32) / 65535.0), 16
        elif np.issubdtype(arr.dtype, np.floating):
            t, depth = torch.from_numpy(np.clip(arr, 0, 1).astype(np.float32)), 8
        else:
            raise DataError(f"{name}: unsupported in-memory array dtype {arr.dtype}")
        t = t.permute(2, 0, 1)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t[:3].contiguous(), depth


def scan_images(source: ImageSource, *, what: str = "image folder") -> list[ImageRecord]:
    """List the usable images of ``source`` (a folder, or in-memory images), sorted by name.

    Raises:
        DataError: the folder is missing, is not a folder, or holds no image files;
            ``what`` names the argument in the message (e.g. ``"HR folder"``).

    A corrupt or unreadable file is named in a warning and left out.
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source).expanduser()
        if not root.exists():
            raise DataError(f"{root}: {what} not found")
        if not root.is_dir():
            raise DataError(f"{root}: {what} is not a folder")
        from ..imageio import list_images

        files = list_images(root)
        if not files:
            raise DataError(f"{root}: {what} contains no image files (.png, .jpg, .bmp, .tif, .webp, ...)")
        records = []
        for f in files:
            try:
                size, depth = _header(f)
            except ImageReadError as exc:
                warnings.warn(f"skipping {exc}", RuntimeWarning, stacklevel=3)
                continue
            records.append(ImageRecord(f.stem, size, depth, path=f))
        if not records:
            raise DataError(f"{root}: {what} has no readable images ({len(files)} files, all skipped)")
        return records
    items = list(source.items()) if isinstance(source, Mapping) else list(source)
    if not items:
        raise DataError(f"{what}: no in-memory images given")
    records = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise DataError(f"{what}: in-memory images must be (name, image) pairs, got {type(item).__name__}")
        name, image = item
        rgb, depth = _array_to_rgb(image, name)
        records.append(ImageRecord(name, (int(rgb.shape[-2]), int(rgb.shape[-1])), depth, image=rgb))
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{what}: duplicate image names {dup}")
    return records


def _load(record: ImageRecord) -> Tensor:
    """The record's ``(3, H, W)`` float32 image (alpha dropped); raises ImageReadError."""
    if record.image is not None:
        return record.image
    from ..imageio import read_image

    data = read_image(record.path)
    if data.size != record.size:
        raise ImageReadError(f"{record.path}: decoded size {data.size} differs from its header {record.size}")
    return data.rgb


# --------------------------------------------------------------------------- base


class _SRDataset(Dataset):
    """Shared machinery: per-item generator, decode with caching and bad-file fallback."""

    scale: int
    seed: int
    epoch: int
    cache: bool

    def _init_common(self, scale: int, seed: int, cache: bool) -> None:
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.scale = int(scale)
        self.seed = int(seed)
        self.epoch = 0
        self.cache = bool(cache)
        self._cache: dict[tuple[int, int], Tensor] = {}
        self._bad: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose randomness :meth:`__getitem__` uses."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator:
        """The item's generator, from ``(seed, epoch, index)`` only."""
        return T.item_generator(self.seed, self.epoch, index)

    def _read(self, index: int, slot: int, record: ImageRecord) -> Tensor:
        key = (index, slot)
        if key in self._cache:
            return self._cache[key]
        img = _load(record)
        if self.cache and record.image is None:
            self._cache[key] = img
        return img

    def __len__(self) -> int:
        return len(self._records_for_len())

    def _records_for_len(self) -> list:
        raise NotImplementedError

    def _item(self, index: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of {n} images")
        index %= n
        for k in range(n):
            i = (index + k) % n
            if i in self._bad:
                continue
            try:
                return self._item(i)
            except ImageReadError as exc:
                self._bad.add(i)
                warnings.warn(f"skipping {exc}", RuntimeWarning, stacklevel=2)
        raise DataError(f"{type(self).__name__}: every image failed to decode")


def _check_crop(crop: int, scale: int, what: str) -> int:
    if int(crop) != crop or crop < 1:
        raise ValueError(f"{what}: crop must be a positive integer, got {crop!r}")
    if crop % scale:
        raise ValueError(f"{what}: crop {crop} must be divisible by scale {scale}")
    return int(crop)


def _keep_large_enough(records: list[ImageRecord], min_hw: tuple[int, int], crop: int, what: str) -> list[ImageRecord]:
    kept = []
    for r in records:
        if r.size[0] < min_hw[0] or r.size[1] < min_hw[1]:
            where = r.path if r.path is not None else r.name
            warnings.warn(f"skipping {where}: {r.size[0]}x{r.size[1]} is smaller than the {crop}x{crop} crop", RuntimeWarning, stacklevel=3)
            continue
        kept.append(r)
    return kept


def _source_name(source: ImageSource) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "in-memory images"


# --------------------------------------------------------------------------- datasets


class HRFolderDataset(_SRDataset):
    """HR images; LR made on the fly with MATLAB-compatible bicubic.

    Each item takes a random ``crop x crop`` HR patch (aligned to the LR grid) and its LR
    patch ``imresize(hr, 1/scale)`` computed exactly as if the whole (mod-cropped) image
    had been downscaled first, the usual offline protocol. With ``augment`` the pair is
    flipped/rotated identically.

    Args:
        root: a folder of HR images, or in-memory images (see :data:`ImageSource`).
        scale: 2, 3, 4, ...
        crop: HR patch size (default 128); must be divisible by ``scale``.
        augment: random horizontal flip and 90-degree rotations.
        seed: the data seed; an item depends only on ``(seed, epoch, index)``.
        quantize_lr: round the LR patch to the source's bit depth (as if saved to a file).
        cache: keep decoded images in memory (per process).
        border: per axis, the probability that a crop lies against an image edge
            (:func:`gradguide.data.transforms.random_crop_position`); 0 = uniform crops.
        lr_from: ``"image"`` (the whole image's LR, above) or ``"crop"`` (the HR patch
            downscaled on its own, so that every patch edge is an image border as the
            kernel sees it: :func:`gradguide.data.transforms.bicubic_lr_crop`).

    Items: ``(lr, hr)`` float32, ``(3, crop/scale, crop/scale)`` and ``(3, crop, crop)``.
    """

    def __init__(
        self,
        root: ImageSource,
        scale: int,
        *,
        crop: int = 128,
        augment: bool = True,
        seed: int = 0,
        quantize_lr: bool = True,
        cache: bool = False,
        border: float = 0.0,
        lr_from: str = "image",
    ) -> None:
        self._init_common(scale, seed, cache)
        self.crop = _check_crop(crop, self.scale, "HRFolderDataset")
        self.border = float(border)
        if lr_from not in T.LR_FROM:
            raise DataError(f"HRFolderDataset: lr_from must be one of {', '.join(T.LR_FROM)}, got {lr_from!r}")
        self.lr_from = lr_from
        self.augment = bool(augment)
        self.quantize_lr = bool(quantize_lr)
        self.root = root
        records = scan_images(root, what="HR folder")
        self.records = _keep_large_enough(records, (self.crop, self.crop), self.crop, "HR")
        if not self.records:
            raise DataError(f"{_source_name(root)}: no HR image is at least {self.crop}x{self.crop} (the crop size)")

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    def _records_for_len(self) -> list:
        return self.records

    def _item(self, index: int) -> tuple[Tensor, Tensor]:
        rec = self.records[index]
        hr_full = self._read(index, 0, rec)
        g = self.generator(index)
        s, c = self.scale, self.crop // self.scale
        top, left = T.random_crop_position(hr_full.shape[-2] // s, hr_full.shape[-1] // s, c, g, border=self.border)
        lr, hr = T.bicubic_lr_crop(hr_full, s, top, left, c, lr_from=self.lr_from)
        if self.quantize_lr:
            lr = T.quantize(lr, rec.bit_depth)
        else:
            lr = lr.clamp(0, 1)
        if self.augment:
            lr, hr = T.paired_augment(lr, hr, g)
        return lr.float().contiguous(), hr.float().contiguous()

    def __repr__(self) -> str:
        return f"HRFolderDataset({_source_name(self.root)!r}, scale={self.scale}, crop={self.crop}, images={len(self)})"


def _pair_records(lr_recs: list[ImageRecord], hr_recs: list[ImageRecord], scale: int, lr_what: str) -> list[tuple[ImageRecord, ImageRecord]]:
    by_name = {r.name: r for r in lr_recs}
    pairs = []
    for hr in hr_recs:
        lr = by_name.get(hr.name) or by_name.get(f"{hr.name}x{scale}") or by_name.get(f"{hr.name}_x{scale}")
        if lr is None:
            warnings.warn(f"skipping {hr.path or hr.name}: no LR image with the same name in {lr_what}", RuntimeWarning, stacklevel=3)
            continue
        (h, w), (H, W) = lr.size, hr.size
        if H // scale != h or W // scale != w:
            raise DataError(
                f"{lr.path or lr.name} ({h}x{w}) does not match {hr.path or hr.name} ({H}x{W}) at scale {scale}: "
                f"the LR image should be {H // scale}x{W // scale}"
            )
        pairs.append((lr, hr))
    return pairs


class _PairedSRDataset(_SRDataset):
    """Datasets over ``self.pairs``: ``(lr_record | None, hr_record)`` tuples."""

    pairs: list

    @property
    def names(self) -> list[str]:
        return [hr.name for _, hr in self.pairs]

    def _records_for_len(self) -> list:
        return self.pairs


class PairedFolderDataset(_PairedSRDataset):
    """LR and HR folders paired by file stem (``0001.png`` with ``0001.png``, or the
    DIV2K style ``0001x4.png`` with ``0001.png``).

    An HR image must be ``scale`` times its LR image (after cropping the HR to a multiple
    of ``scale``); otherwise a :class:`DataError` names both files. HR images without an
    LR partner, and pairs smaller than the crop, are skipped with a warning.

    Args:
        lr_root, hr_root: folders (or in-memory images).
        scale, crop, augment, seed, cache, border: as :class:`HRFolderDataset`.

    Items: ``(lr, hr)`` float32, ``(3, crop/scale, crop/scale)`` and ``(3, crop, crop)``.
    """

    def __init__(
        self,
        lr_root: ImageSource,
        hr_root: ImageSource,
        scale: int,
        *,
        crop: int = 128,
        augment: bool = True,
        seed: int = 0,
        cache: bool = False,
        border: float = 0.0,
    ) -> None:
        self._init_common(scale, seed, cache)
        self.crop = _check_crop(crop, self.scale, "PairedFolderDataset")
        self.border = float(border)
        self.augment = bool(augment)
        self.lr_root, self.hr_root = lr_root, hr_root
        hr_recs = scan_images(hr_root, what="HR folder")
        lr_recs = scan_images(lr_root, what="LR folder")
        pairs = _pair_records(lr_recs, hr_recs, self.scale, _source_name(lr_root))
        c = self.crop // self.scale
        self.pairs = []
        for lr, hr in pairs:
            if lr.size[0] < c or lr.size[1] < c:
                warnings.warn(
                    f"skipping {hr.path or hr.name}: {hr.size[0]}x{hr.size[1]} is smaller than the {self.crop}x{self.crop} crop",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            self.pairs.append((lr, hr))
        if not self.pairs:
            raise DataError(
                f"{_source_name(hr_root)}: no usable LR/HR pairs with {_source_name(lr_root)} "
                f"(names must match; images at least {self.crop}x{self.crop})"
            )

    def _item(self, index: int) -> tuple[Tensor, Tensor]:
        lr_rec, hr_rec = self.pairs[index]
        lr_full = self._read(index, 0, lr_rec)
        hr_full = self._read(index, 1, hr_rec)
        g = self.generator(index)
        lr, hr = T.paired_random_crop(lr_full, hr_full, self.scale, self.crop, g, border=self.border)
        if self.augment:
            lr, hr = T.paired_augment(lr, hr, g)
        return lr.float().contiguous(), hr.float().contiguous()

    def __repr__(self) -> str:
        return (
            f"PairedFolderDataset({_source_name(self.lr_root)!r}, {_source_name(self.hr_root)!r}, scale={self.scale}, "
            f"crop={self.crop}, pairs={len(self)})"
        )


class ValidationDataset(_PairedSRDataset):
    """Whole images for validation: HR cropped to a multiple of ``scale`` (bottom/right),
    LR = ``imresize(hr, 1/scale)`` (MATLAB bicubic, rounded to the source's bit depth)
    or, with ``lr_root``, the paired LR files.

    Args:
        root: HR folder or in-memory images.
        scale: 2, 3, 4, ...
        lr_root: optional LR folder paired by stem (see :class:`PairedFolderDataset`).
        cache: keep decoded pairs in memory (default True: validation sets are small and
            re-read every validation round).

    Items: ``(lr, hr)`` float32, ``(3, h, w)`` and ``(3, h*scale, w*scale)``; sizes vary
    per image (use batch size 1). :attr:`names` gives each item's name.
    """

    def __init__(self, root: ImageSource, scale: int, *, lr_root: Optional[ImageSource] = None, quantize_lr: bool = True, cache: bool = True) -> None:
        self._init_common(scale, 0, cache)
        self.root, self.lr_root = root, lr_root
        self.quantize_lr = bool(quantize_lr)
        hr_recs = scan_images(root, what="validation HR folder")
        if lr_root is not None:
            lr_recs = scan_images(lr_root, what="validation LR folder")
            self.pairs = _pair_records(lr_recs, hr_recs, self.scale, _source_name(lr_root))
        else:
            self.pairs = [(None, r) for r in _keep_large_enough(hr_recs, (self.scale, self.scale), self.scale, "HR")]
        if not self.pairs:
            raise DataError(f"{_source_name(root)}: no usable validation images")
        self._items: dict[int, tuple[Tensor, Tensor]] = {}

    def _item(self, index: int) -> tuple[Tensor, Tensor]:
        if index in self._items:
            return self._items[index]
        from .imresize import imresize

        lr_rec, hr_rec = self.pairs[index]
        hr = T.mod_crop(_load(hr_rec), self.scale)
        if lr_rec is None:
            lr = imresize(hr, 1.0 / self.scale)
            lr = T.quantize(lr, hr_rec.bit_depth) if self.quantize_lr else lr.clamp(0, 1)
        else:
            lr = _load(lr_rec)
        item = (lr.float().contiguous(), hr.float().contiguous())
        if self.cache:
            self._items[index] = item
        return item

    def __repr__(self) -> str:
        return f"ValidationDataset({_source_name(self.root)!r}, scale={self.scale}, images={len(self)})"


# --------------------------------------------------------------------------- demo images

#: scikit-image photos shipped inside its wheel (no download), used for the demo's
#: fine-tuning segment (colour photos and textures).
DEMO_TRAIN: tuple[str, ...] = (
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "brick",
    "grass",
    "gravel",
    "moon",
)
#: held out for the demo's evaluation: colourful photos (a colour shift shows on them) and
#: one greyscale photo (its output must stay exactly grey). Natural photos only: on a
#: synthetic, perfectly smooth colour wheel bicubic is near-lossless (55 dB) and says
#: nothing about photos.
DEMO_EVAL: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def demo_images(split: str = "train") -> list[tuple[str, np.ndarray]]:
    """scikit-image's bundled photos as ``(name, HxW[xC] uint8 array)`` pairs, usable
    as the ``root`` of any dataset here. ``split``: ``"train"`` (:data:`DEMO_TRAIN`) or
    ``"eval"``/``"val"`` (:data:`DEMO_EVAL`, disjoint). Offline: these images are inside
    the scikit-image wheel."""
    import skimage.data

    if split == "train":
        names = DEMO_TRAIN
    elif split in ("eval", "val"):
        names = DEMO_EVAL
    else:
        raise ValueError(f"demo_images: split must be 'train' or 'eval', got {split!r}")
    out = []
    for n in names:
        fn = getattr(skimage.data, n, None)
        if fn is None:
            raise DataError(f"demo_images: scikit-image has no bundled image {n!r} (installed version too old/new?)")
        out.append((n, np.asarray(fn())))
    return out


def skimage_dataset(split: str, scale: int, *, crop: int = 128, augment: bool = True, seed: int = 0):
    """The demo datasets: ``"train"`` -> :class:`HRFolderDataset` over
    :func:`demo_images` ``("train")``; ``"val"``/``"eval"`` -> :class:`ValidationDataset`
    over the held-out images."""
    if split == "train":
        return HRFolderDataset(demo_images("train"), scale, crop=crop, augment=augment, seed=seed)
    return ValidationDataset(demo_images(split), scale)
