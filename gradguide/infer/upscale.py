"""Upscale image files with any SR model: tiled, streamed, robust to bad files.

``upscale(model, inputs, out_dir)`` reads each file with :func:`gradguide.imageio.read_image`,
runs :func:`gradguide.infer.tiling.run_tiles` and writes PNGs. Output rows are quantised
band by band straight into a ``uint8`` (or ``uint16`` for 16-bit inputs) array, so the
only full-size buffer is the final image itself.

* greyscale files are run as RGB (replicated) and written back as one grey channel;
* alpha is upscaled separately with MATLAB bicubic (:func:`gradguide.data.imresize.imresize`)
  and clipped, never passed through the network;
* 16-bit inputs give 16-bit outputs;
* a file that cannot be read (corrupt, truncated, not an image, too large) is reported
  in the result and the log and skipped; the batch goes on.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ImageReadError
from .tiling import InferenceError, DEFAULT_OVERLAP, DEFAULT_TILE, model_scale, resolve_device, resolve_dtype, run_tiles

__all__ = ["UpscaleResult", "upscale", "upscale_image", "resolve_model", "bicubic_band"]

PathLike = Union[str, os.PathLike]


@dataclass
class UpscaleResult:
    """What happened to one input file."""

    input: Path
    output: Optional[Path] = None
    grad: Optional[Path] = None
    compare: Optional[Path] = None
    error: Optional[str] = None
    size: Optional[tuple[int, int]] = None  # output (H, W)
    tile: Optional[int] = None  # tile size that succeeded
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def resolve_model(model: Union[nn.Module, PathLike], scale: Optional[int] = None) -> nn.Module:
    """An ``nn.Module`` as it is, or a checkpoint path loaded with :func:`gradguide.load`."""
    if isinstance(model, nn.Module):
        return model
    from ..checkpoints import load

    p = Path(model)
    if not p.is_file():
        raise InferenceError(f"{p}: model file not found")
    return load(p, scale=scale) if scale is not None else load(p)


def _quantize_band(x: Tensor, bit_depth: int) -> np.ndarray:
    """``(C, h, W)`` float -> ``(h, W, C)`` uint8/uint16, round half up, clipped."""
    maxv = 255.0 if bit_depth == 8 else 65535.0
    q = torch.floor(x.clamp(0, 1) * maxv + 0.5)
    return q.permute(1, 2, 0).numpy().astype(np.uint8 if bit_depth == 8 else np.uint16)


def bicubic_band(lr: Tensor, scale: int, y0: int, y1: int, mats: Optional[dict] = None) -> Tensor:
    """Rows ``[y0, y1)`` of MATLAB-bicubic ``lr`` ``(C, H, W)`` upscaled by ``scale`` (float)."""
    from ..data.imresize import resize_matrix

    c, h, w = lr.shape
    if mats is None:
        mats = {}
    if "h" not in mats:
        mats["h"] = resize_matrix(h, h * scale, float(scale), dtype=torch.float32)
        mats["w"] = resize_matrix(w, w * scale, float(scale), dtype=torch.float32)
    return torch.matmul(torch.matmul(mats["h"][y0:y1], lr.float()), mats["w"].t())


def upscale_image(
    model: nn.Module,
    rgb: Tensor,
    *,
    scale: int,
    bit_depth: int = 8,
    grey: bool = False,
    alpha: Optional[Tensor] = None,
    with_grad: bool = False,
    with_compare: bool = False,
    tile: Optional[int] = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    precision: str = "fp32",
    on_tile: Optional[Callable[[int, int], None]] = None,
    on_retry: Optional[Callable[[int, BaseException], None]] = None,
) -> dict:
    """Upscale one ``(3, H, W)`` image in ``[0, 1]`` into quantised numpy arrays.

    Returns a dict with ``sr`` (``(sH, sW[, C])`` uint8/uint16, one channel if ``grey``,
    plus alpha as the last channel if given), ``grad`` (uint8 ``(sH, sW, 3)`` or ``None``),
    ``compare`` (bicubic | model side by side, or ``None``) and ``tile`` (tile used).
    """
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"rgb must have shape (3, H, W), got {tuple(rgb.shape)}")
    _, h, w = rgb.shape
    oh, ow = h * scale, w * scale
    nc = (1 if grey else 3) + (1 if alpha is not None else 0)
    out = np.zeros((oh, ow, nc), dtype=np.uint8 if bit_depth == 8 else np.uint16)
    grad_out = np.zeros((oh, ow, 3), dtype=np.uint8) if with_grad else None
    cmp_out = np.zeros((oh, 2 * ow, 3), dtype=np.uint8) if with_compare else None
    state = {"grad": False}
    mats: dict = {}

    def sink(y0: int, y1: int, sr: Tensor, grad: Optional[Tensor]) -> None:
        band = sr[0]
        if band.shape[0] != 3:
            raise InferenceError(f"model returned {band.shape[0]} channels; only 3-channel (RGB) models are supported")
        colour = band.mean(dim=0, keepdim=True) if grey else band
        out[y0:y1, :, : colour.shape[0]] = _quantize_band(colour, bit_depth)
        if grad_out is not None and grad is not None:
            state["grad"] = True
            grad_out[y0:y1] = _quantize_band(grad[0], 8)
        if cmp_out is not None:
            cmp_out[y0:y1, :ow] = _quantize_band(bicubic_band(rgb, scale, y0, y1, mats), 8)
            cmp_out[y0:y1, ow:] = _quantize_band(band, 8)

    used = run_tiles(
        model, rgb[None], sink, scale=scale, tile=tile, overlap=overlap, device=device,
        precision=precision, with_grad=with_grad, on_tile=on_tile, on_retry=on_retry,
    )
    if alpha is not None:
        from ..data.imresize import imresize

        if bit_depth == 8:  # exactly MATLAB imresize(alpha_uint8, scale, 'bicubic')
            a8 = torch.floor(alpha[0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
            out[..., -1] = imresize(a8, float(scale))
        else:
            out[..., -1] = _quantize_band(imresize(alpha.double(), float(scale)), bit_depth)[..., 0]
    sr = out[..., 0] if nc == 1 else out
    return {"sr": sr, "grad": grad_out if state["grad"] else None, "compare": cmp_out, "tile": used}


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = stem, 2
    while name in used:
        name = f"{stem}_{k}"
        k += 1
    used.add(name)
    return name


def upscale(
    model: Union[nn.Module, PathLike],
    inputs: Union[PathLike, Sequence[PathLike]],
    out_dir: PathLike,
    *,
    scale: Optional[int] = None,
    tile: Optional[int] = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    precision: str = "fp32",
    save_grad: bool = False,
    compare: bool = False,
    max_pixels: Optional[int] = None,
    suffix: str = "",
    progress: bool = True,
    console=None,
) -> list[UpscaleResult]:
    """Upscale files, folders and globs into ``out_dir`` (the API behind ``gradguide upscale``).

    Args:
        model: an ``nn.Module`` or a checkpoint path for :func:`gradguide.load`.
        inputs: files, folders or glob patterns (see :func:`gradguide.imageio.list_images`).
        out_dir: where ``<stem><suffix>.png`` (and ``<stem>_grad.png``,
            ``<stem>_compare.png``) go; created if needed.
        scale: override the model's ``scale`` attribute.
        tile, overlap: LR tile side and overlap (see :mod:`gradguide.infer.tiling`);
            ``tile=None`` runs each image in one piece.
        device: ``cpu``, ``cuda`` or ``mps``. precision: ``fp32``, ``fp16`` or ``bf16``.
        save_grad: write the gradient branch's map (models returning ``SROutput``).
        compare: write a side-by-side PNG (MATLAB bicubic | model).
        max_pixels: refuse inputs larger than this (decompression bombs).
        progress: show a rich progress bar over files and tiles (on ``console``).

    Returns:
        one :class:`UpscaleResult` per input file, in order; unreadable files have
        ``error`` set and no output.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..imageio import list_images, read_image, write_image

    console = console or Console(stderr=True)
    resolve_device(device)
    resolve_dtype(precision)
    net = resolve_model(model, scale)
    s = model_scale(net, scale)
    # expand each input on its own: a missing path or an empty glob is named and skipped,
    # and the rest of the batch still runs
    files_set: dict[Path, None] = {}
    results: list[UpscaleResult] = []
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs):
        try:
            files_set.update(dict.fromkeys(list_images([item])))
        except ImageReadError as exc:
            results.append(UpscaleResult(input=Path(os.fspath(item)), error=str(exc)))
            console.print(f"[yellow]skipped:[/yellow] {_escape(str(exc))}", highlight=False)
    if not files_set:
        raise ImageReadError(results[0].error if results else "no input images given")
    files = sorted(files_set)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    prog = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not progress, transient=False,
    )
    with prog:
        t_files = prog.add_task("files", total=len(files))
        t_tiles = prog.add_task("tiles", total=1)
        for f in files:
            res = UpscaleResult(input=f)
            t0 = time.perf_counter()
            prog.update(t_files, description=f"files [dim]{f.name}[/dim]")
            try:
                img = read_image(f, max_pixels=max_pixels)
                prog.reset(t_tiles, total=1)

                def on_tile(done: int, total: int) -> None:
                    prog.update(t_tiles, completed=done, total=total)

                def on_retry(new_tile: int, exc: BaseException) -> None:
                    console.print(f"[yellow]{f}: out of memory, retrying with --tile {new_tile}[/yellow]", highlight=False)

                r = upscale_image(
                    net, img.rgb, scale=s, bit_depth=img.bit_depth, grey=img.is_grey, alpha=img.alpha,
                    with_grad=save_grad, with_compare=compare, tile=tile, overlap=overlap, device=device,
                    precision=precision, on_tile=on_tile, on_retry=on_retry,
                )
                stem = _unique_name(f.stem + suffix, used)
                res.output = write_image(out / f"{stem}.png", r["sr"])
                res.size = (r["sr"].shape[0], r["sr"].shape[1])
                res.tile = r["tile"]
                if save_grad:
                    if r["grad"] is None:
                        console.print(f"[yellow]{f}: the model returns no gradient map; --save-grad ignored[/yellow]", highlight=False)
                    else:
                        res.grad = write_image(out / f"{stem}_grad.png", r["grad"])
                if compare:
                    res.compare = write_image(out / f"{stem}_compare.png", r["compare"])
            except ImageReadError as exc:
                res.error = str(exc)
                console.print(f"[yellow]skipped:[/yellow] {_escape(str(exc))}", highlight=False)
            res.seconds = time.perf_counter() - t0
            results.append(res)
            prog.advance(t_files)
    return results


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)
