"""Safe image reading and writing: greyscale, RGBA, 16-bit PNG, corrupt files, bombs.

Decoding is done by Pillow (it reads every common format, verifies PNG CRCs, reports
truncation, and has a decompression-bomb guard) except for 16-bit PNGs with colour:
Pillow silently truncates 48/64-bit RGB(A) PNGs to 8 bits per channel, so those (and,
for one code path, every 16-bit PNG) are decoded and encoded with ``imagecodecs``
(libpng bindings maintained by the tifffile author). See ``docs/inference.md``.

Every failure becomes :class:`gradguide.errors.ImageReadError` with a one-line message
that names the file and the reason, so a batch can log it and go on.
"""
from __future__ import annotations

import glob
import os
import struct
import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .errors import ImageReadError
from .fileio import check_input_file

__all__ = [
    "ImageData",
    "read_image",
    "write_image",
    "list_images",
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "to_uint8",
    "to_uint8_hwc",
    "ImageHeader",
    "read_header",
]

#: file name extensions ``list_images`` keeps (lower case)
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".tga")

#: images with more pixels than this are refused (width * height); 8192 x 8192 by default.
#: Override per call with ``read_image(..., max_pixels=N)`` or with the environment
#: variable ``GRADGUIDE_MAX_PIXELS``.
DEFAULT_MAX_PIXELS: int = int(os.environ.get("GRADGUIDE_MAX_PIXELS", 8192 * 8192))

PathLike = Union[str, os.PathLike]
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


@dataclass
class ImageData:
    """A decoded image.

    Attributes:
        rgb: ``(3, H, W)`` float32 in ``[0, 1]``; greyscale is replicated to 3 channels.
        alpha: ``(1, H, W)`` float32 in ``[0, 1]`` or ``None``.
        is_grey: the file had one colour channel (L, LA, I;16, 1-bit, ...).
        bit_depth: 8 or 16 (bits per channel of the file).
        path: where it was read from.
    """

    rgb: Tensor
    alpha: Optional[Tensor]
    is_grey: bool
    bit_depth: int
    path: Path

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``"""
        return int(self.rgb.shape[-2]), int(self.rgb.shape[-1])


def _png_header(path: Path) -> Optional[tuple[int, int, int, int]]:
    """``(width, height, bit_depth, colour_type)`` from a PNG's IHDR, or None if not PNG."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if not head.startswith(_PNG_SIG):
        return None
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise ImageReadError(f"{path}: corrupt PNG (missing IHDR header)")
    w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
    return w, h, depth, ctype


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, without decoding its pixels.

    Attributes:
        size: ``(H, W)`` as :func:`read_image` returns the image (EXIF orientation applied).
        bit_depth: 8 or 16 (bits per channel of the file).
        format: Pillow's format name (``"PNG"``, ``"JPEG"``...).
    """

    size: tuple[int, int]
    bit_depth: int
    format: str


def read_header(path: PathLike, *, max_pixels: Optional[int] = None, verify: bool = False) -> ImageHeader:
    """The one image-header reader: size, bit depth and format from the file header.

    With ``verify`` a PNG's chunk checksums are checked too (no decompression), which
    catches most corruption. Raises :class:`ImageReadError` (one line naming the file) for
    a missing, non-image, corrupt or over-the-limit file, as :func:`read_image` does.
    """
    from PIL import Image

    p = Path(path)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    png = _checked_png_header(p, limit)
    with _decoder_errors(p), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(p) as im:
            w, h, mode, fmt = im.width, im.height, im.mode, im.format
            _check_pixels(p, w, h, limit)
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # unreadable EXIF: read_image uses the pixels as stored
                orientation = 1
        if verify and fmt == "PNG":
            with Image.open(p) as im:  # verify() must come straight after open()
                im.verify()
    depth = 16 if (png is not None and png[2] == 16) or mode.startswith("I;16") or mode == "I" else 8
    if orientation in (5, 6, 7, 8):  # transposed by read_image
        w, h = h, w
    return ImageHeader((h, w), depth, fmt or "")


def _checked_png_header(p: Path, limit: int) -> Optional[tuple[int, int, int, int]]:
    """The file exists and is readable; a PNG's IHDR is within the pixel limit."""
    check_input_file(p, ImageReadError)
    try:
        png = _png_header(p)
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot read ({_reason(exc)})") from None
    if png is not None:
        _check_pixels(p, png[0], png[1], limit)
    return png


@contextlib.contextmanager
def _decoder_errors(p: Path) -> Iterator[None]:
    """Whatever Pillow raises while reading ``p``, as one :class:`ImageReadError` line."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image file (format not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{p}: refused as a possible decompression bomb ({_reason(exc)})") from None
    except Exception as exc:  # a damaged file can make a decoder raise nearly anything
        raise ImageReadError(f"{p}: corrupt or truncated image ({_reason(exc)})") from None


def _check_pixels(path: Path, w: int, h: int, max_pixels: int) -> None:
    if w * h > max_pixels:
        raise ImageReadError(
            f"{path}: refused, {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
            f"(possible decompression bomb; raise max_pixels / GRADGUIDE_MAX_PIXELS to allow it)"
        )


def _from_array(arr: np.ndarray, path: Path, bit_depth: int) -> ImageData:
    """Build ImageData from an HxW, HxWx1..4 integer/float array."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported image layout {arr.shape}")
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.array(arr, dtype=np.float32)).div_(255.0)
    elif arr.dtype == np.uint16:
        t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32)).div_(65535.0)
    elif np.issubdtype(arr.dtype, np.floating):
        t = torch.from_numpy(np.array(arr, dtype=np.float32)).nan_to_num_(0.0).clamp_(0, 1)
    else:
        info = np.iinfo(arr.dtype)
        t = torch.from_numpy(arr.astype(np.float32)).clamp_(0, info.max).div_(float(info.max))
    t = t.permute(2, 0, 1).contiguous()
    c = t.shape[0]
    is_grey = c in (1, 2)
    colour = t[:1].expand(3, -1, -1).contiguous() if is_grey else t[:3]
    alpha = t[c - 1 : c].clone() if c in (2, 4) else None
    return ImageData(rgb=colour.contiguous(), alpha=alpha, is_grey=is_grey, bit_depth=bit_depth, path=path)


def _read_png16(path: Path) -> ImageData:
    import imagecodecs

    try:
        arr = imagecodecs.png_decode(path.read_bytes())
    except Exception as exc:  # imagecodecs raises its own PngError
        raise ImageReadError(f"{path}: corrupt or truncated 16-bit PNG ({_reason(exc)})") from None
    return _from_array(arr, path, 16)


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def read_image(path: PathLike, *, max_pixels: Optional[int] = None) -> ImageData:
    """Read an image file into an :class:`ImageData`.

    Args:
        path: file to read (any format Pillow reads; 16-bit PNG keeps 16 bits).
        max_pixels: refuse images with more than this many pixels (width * height)
            before decoding them; default :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        ImageReadError: missing, unreadable, non-image, corrupt or truncated file, or an
            image over the pixel limit. The message is one line naming the file.
    """
    from PIL import Image

    p = Path(path)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    png = _checked_png_header(p, limit)
    if png is not None and png[2] == 16:
        return _read_png16(p)
    with _decoder_errors(p):
        with warnings.catch_warnings(record=True) as caught:
            # we apply our own (configurable) limit; Pillow's own guard still raises
            # DecompressionBombError above twice its limit, caught below. Pillow's other
            # warnings are not shown: a truncated file becomes an error, the rest is noise
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                _check_pixels(p, im.width, im.height, limit)
                frames = int(getattr(im, "n_frames", 1) or 1)
                if frames > 1:
                    kind = "animated" if getattr(im, "is_animated", False) and im.format in ("GIF", "PNG", "WEBP") else "multi-frame"
                    raise ImageReadError(f"{p}: {kind} {im.format} ({frames} frames) is not supported")
                im.load()
                im = _exif_upright(im)
                arr = _pil_to_array(im, p)
        truncated = [w for w in caught if "truncat" in str(w.message).lower()]
        if truncated:
            raise ImageReadError(f"{p}: corrupt or truncated image ({truncated[0].message})")
    depth = 16 if arr.dtype == np.uint16 else 8
    return _from_array(arr, p, depth)


def _exif_upright(im):
    """Rotate/flip as the EXIF Orientation tag says (a portrait photo stays portrait)."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF: use the pixels as stored
        return im
    if orientation in (None, 1):
        return im
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # a corrupt orientation tag: use the pixels as stored
        return im


def _pil_to_array(im, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return np.array(im)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":  # 32-bit int greyscale (e.g. 16-bit PNG via some paths, TIFF)
        a = np.asarray(im)
        return np.clip(a, 0, 65535).astype(np.uint16) if a.max(initial=0) > 255 else a.astype(np.uint8)
    if mode == "F":
        return np.array(im, dtype=np.float32)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("P", "PA"):
        has_alpha = "transparency" in im.info or mode == "PA"
        conv = im.convert("RGBA" if has_alpha else "RGB")
        # a palette image of greys stays a colour image here (its palette is RGB)
        return np.asarray(conv)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        return np.asarray(im.convert("RGB"))
    if mode == "La":
        return np.asarray(im.convert("LA"))
    raise ImageReadError(f"{path}: unsupported image mode {mode!r}")


def to_uint8(x: Tensor) -> Tensor:
    """``[0, 1]`` float -> uint8 with round-half-up and clipping (MATLAB ``im2uint8``): the
    one uint8 conversion (float64 input is rounded in float64)."""
    x = x.detach()
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    return torch.floor(x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)


def to_uint8_hwc(x: Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[0, 1]`` (C = 1 or 3) -> ``(H, W, 3)`` uint8 array (:func:`to_uint8`)."""
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return to_uint8(x).permute(1, 2, 0).cpu().numpy()


def _to_hwc(rgb: Tensor, alpha: Optional[Tensor], grey: bool, bit_depth: int) -> np.ndarray:
    if not isinstance(rgb, Tensor):
        raise TypeError(f"write_image: rgb must be a torch.Tensor, got {type(rgb).__name__}")
    if rgb.ndim == 4 and rgb.shape[0] == 1:
        rgb = rgb[0]
    if rgb.ndim != 3 or rgb.shape[0] not in (1, 3):
        raise ValueError(f"write_image: rgb must have shape (3, H, W) or (1, H, W), got {tuple(rgb.shape)}")
    if bit_depth not in (8, 16):
        raise ValueError(f"write_image: bit_depth must be 8 or 16, got {bit_depth}")
    planes = rgb.detach().float().cpu()
    if grey and planes.shape[0] == 3:
        # replicated grey -> keep one channel (the mean, robust to tiny channel drift)
        planes = planes.mean(dim=0, keepdim=True)
    if alpha is not None:
        a = alpha.detach().float().cpu()
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim == 2:
            a = a[None]
        if a.shape != (1,) + tuple(planes.shape[-2:]):
            raise ValueError(f"write_image: alpha must have shape (1, H, W) = (1, {planes.shape[-2]}, {planes.shape[-1]}), got {tuple(a.shape)}")
        planes = torch.cat([planes, a], dim=0)
    maxv = 255.0 if bit_depth == 8 else 65535.0
    q = torch.floor(planes.clamp(0, 1) * maxv + 0.5)
    arr = np.ascontiguousarray(q.permute(1, 2, 0).numpy().astype(np.uint8 if bit_depth == 8 else np.uint16))
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return arr


def write_image(
    path: PathLike,
    rgb: Union[Tensor, np.ndarray],
    *,
    alpha: Optional[Tensor] = None,
    bit_depth: int = 8,
    grey: bool = False,
    overwrite: bool = True,
) -> Path:
    """Write a PNG atomically (temporary file in the same folder, then rename), with the
    mode the umask gives (see :func:`gradguide.fileio.atomic_write`).

    Args:
        path: destination; parent folders are created. Written as PNG whatever the suffix.
        rgb: ``(3, H, W)`` (or ``(1, H, W)``) float in ``[0, 1]``; clipped and rounded.
            A numpy ``uint8``/``uint16`` array ``(H, W[, C])`` is written as it is
            (``alpha``, ``grey`` and ``bit_depth`` are then taken from the array).
        alpha: optional ``(1, H, W)`` float in ``[0, 1]``.
        bit_depth: 8 or 16 bits per channel.
        grey: write one grey channel (the mean of the three channels).
        overwrite: replace an existing file; with ``False`` an existing ``path`` raises
            :class:`FileExistsError` and is left untouched.

    Returns:
        the path written.
    """
    p = Path(path)
    if isinstance(rgb, np.ndarray):  # already quantised (H, W) / (H, W, C) uint8 or uint16
        if rgb.dtype not in (np.uint8, np.uint16) or rgb.ndim not in (2, 3):
            raise ValueError(f"write_image: numpy input must be uint8/uint16 (H, W[, C]), got {rgb.dtype} {rgb.shape}")
        arr = np.ascontiguousarray(rgb)
        bit_depth = 16 if rgb.dtype == np.uint16 else 8
    else:
        arr = _to_hwc(rgb, alpha, grey, bit_depth)
    from .fileio import atomic_write

    p.parent.mkdir(parents=True, exist_ok=True)

    def _write(fh) -> None:
        if bit_depth == 16:
            import imagecodecs

            fh.write(imagecodecs.png_encode(arr))
        else:
            from PIL import Image

            Image.fromarray(arr).save(fh, format="PNG")

    atomic_write(p, _write, overwrite=overwrite, fsync=False)
    return p


def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def list_images(
    inputs: Union[PathLike, Sequence[PathLike]],
    *,
    recursive: bool = False,
    skipped: Optional[list] = None,
) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted list of image paths.

    A file named explicitly is kept whatever its extension (so a bad file is reported
    by ``read_image`` instead of vanishing); folders and globs keep only
    :data:`IMAGE_EXTENSIONS`. Duplicates are removed.

    Args:
        skipped: if a list is given, ``(path, reason)`` is appended to it for every other
            file a folder or glob holds (``.gif``, ``.txt``, ...; hidden files excepted), so
            a caller can name them instead of dropping them silently.

    Raises:
        ImageReadError: an input that is neither an existing path nor a glob with matches.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: dict[Path, None] = {}

    def other(q: Path) -> None:
        if skipped is not None and not q.name.startswith("."):
            kind = q.suffix.lower() or "without an extension"
            skipped.append((q, f"{q}: unsupported file type ({kind}; reads {', '.join(IMAGE_EXTENSIONS)})"))

    for item in inputs:
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            it: Iterable[Path] = p.rglob("*") if recursive else p.iterdir()
            for q in sorted(it):
                if q.is_file():
                    if _is_image_name(q):
                        found[q] = None
                    else:
                        other(q)
                elif skipped is not None and q.is_symlink() and not q.exists():  # dangling, or a loop
                    try:
                        check_input_file(q, ImageReadError)
                    except ImageReadError as exc:
                        skipped.append((q, str(exc)))
        elif p.is_file():
            found[p] = None
        elif glob.has_magic(s):
            matches = sorted(Path(m) for m in glob.glob(s, recursive=recursive))
            files = [m for m in matches if m.is_file() and _is_image_name(m)]
            for m in matches:
                if m.is_file() and not _is_image_name(m):
                    other(m)
            if not files and not (skipped and any(m.is_file() for m in matches)):
                raise ImageReadError(f"{s}: glob matched no image files")
            for m in files:
                found[m] = None
        else:
            try:
                check_input_file(p, ImageReadError)
            except ImageReadError as exc:
                if str(exc).endswith(": no such file"):
                    raise ImageReadError(f"{s}: no such file or folder") from None
                raise
            raise ImageReadError(f"{s}: not a file or folder")
    return sorted(found)
