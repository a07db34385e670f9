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

from ..errors import BatchStopped, GradguideError, ImageReadError, NonFiniteError, TileOOMError
from ..bundled import BUNDLED, resolve_checkpoint
from ..fileio import FATAL_WRITE_ERRNOS, one_line, os_reason
from .ensemble import SelfEnsemble
from .tiling import InferenceError, DEFAULT_OVERLAP, DEFAULT_TILE, model_scale, parse_memory, resolve_device, resolve_dtype, run_tiles

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
    exists: Optional[Path] = None  # set when skipped because this output exists (no --overwrite)
    size: Optional[tuple[int, int]] = None  # output (H, W)
    tile: Optional[int] = None  # tile size that succeeded
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No error (written, or left alone because its output exists)."""
        return self.error is None

    @property
    def written(self) -> bool:
        return self.output is not None


def resolve_model(model: Union[nn.Module, PathLike], scale: Optional[int] = None) -> nn.Module:
    """An ``nn.Module`` as it is, a checkpoint path loaded with :func:`gradguide.load`, or
    the name of a bundled model (``"default"``)."""
    if isinstance(model, nn.Module):
        return model
    from ..checkpoints import load

    p = resolve_checkpoint(model)  # a bundled model's name ("default") -> its file
    if not p.is_file() and not p.is_symlink():
        raise InferenceError(f"{p}: model file not found (and no bundled model of that name; bundled: "
                             f"{', '.join(m.name for m in BUNDLED)})")
    return load(p, scale=scale) if scale is not None else load(p)


def check_scale(net: nn.Module, scale: Optional[int], name: object = "the model") -> None:
    """Refuse ``--scale`` that contradicts the model's own ``scale``, naming both."""
    declared = getattr(net, "scale", None)
    if scale is not None and isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1 and int(scale) != declared:
        raise InferenceError(f"--scale {scale}: {name} is an x{declared} model (leave --scale out to use x{declared})")


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
    tile: Union[int, str, None] = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    precision: str = "fp32",
    on_tile: Optional[Callable[[int, int], None]] = None,
    on_retry: Optional[Callable[[int, BaseException], None]] = None,
    max_memory: Union[int, str, None] = None,
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
        if not bool(torch.isfinite(band).all()):
            raise NonFiniteError(f"the model's output has NaN/Inf values in rows {y0}-{y1}; nothing written (non-finite weights? see `gradguide inspect`)")
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
        precision=precision, with_grad=with_grad, on_tile=on_tile, on_retry=on_retry, max_memory=max_memory,
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


def prepare_out_dir(out: Path, flag: str = "-o") -> None:
    """Create the output folder, or refuse with one line naming ``flag``."""
    if out.exists() and not out.is_dir():
        raise InferenceError(f"{flag} {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InferenceError(f"{flag} {out}: is a file, not a folder") from None
    except OSError as exc:
        raise InferenceError(f"{flag} {out}: cannot create the folder ({os_reason(exc)})") from None


def _expand_inputs(inputs, console) -> tuple[list[Path], list[UpscaleResult], list[str]]:
    """Each input on its own: a missing path, an empty glob or folder, an unsupported file
    is named and skipped, and the rest of the batch still runs."""
    from ..imageio import list_images

    files: dict[Path, None] = {}
    skipped: list[UpscaleResult] = []
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs):
        others: list = []
        try:
            found = list_images([item], skipped=others)
        except ImageReadError as exc:
            skipped.append(UpscaleResult(input=Path(os.fspath(item)), error=str(exc)))
            continue
        skipped.extend(UpscaleResult(input=q, error=why) for q, why in others)
        if not found and not others and Path(os.fspath(item)).is_dir():
            skipped.append(UpscaleResult(input=Path(os.fspath(item)), error=f"{os.fspath(item)}: no image files in the folder"))
        files.update(dict.fromkeys(found))
    return sorted(files), skipped, [r.error for r in skipped if r.error]


def upscale(
    model: Union[nn.Module, PathLike],
    inputs: Union[PathLike, Sequence[PathLike]],
    out_dir: PathLike,
    *,
    scale: Optional[int] = None,
    tile: Union[int, str, None] = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    precision: str = "fp32",
    save_grad: bool = False,
    compare: bool = False,
    max_pixels: Optional[int] = None,
    suffix: str = "",
    overwrite: bool = False,
    progress: bool = True,
    console=None,
    max_memory: Union[int, str, None] = None,
    self_ensemble: bool = False,
) -> list[UpscaleResult]:
    """Upscale files, folders and globs into ``out_dir`` (the API behind ``gradguide upscale``).

    Args:
        model: an ``nn.Module`` or a checkpoint path for :func:`gradguide.load`.
        inputs: files, folders or glob patterns (see :func:`gradguide.imageio.list_images`).
        out_dir: where ``<stem><suffix>.png`` (and ``<stem>_grad.png``,
            ``<stem>_compare.png``) go; created if needed.
        scale: the model's scale where the file cannot tell; refused if it contradicts it.
        tile, overlap: LR tile side and overlap (see :mod:`gradguide.infer.tiling`);
            ``tile=None`` runs each image in one piece; ``"auto"`` (default) sizes the
            tiles from ``max_memory`` (on the CPU at most ``CPU_TILE``) and runs an image
            that fits in one piece.
        max_memory: budget for ``tile="auto"`` (bytes or ``"3G"``; default: from the
            free memory, :func:`gradguide.infer.tiling.default_memory_budget`).
        device: ``cpu``, ``cuda`` or ``mps``. precision: ``fp32``, ``fp16`` or ``bf16``.
        save_grad: write the gradient branch's map (models returning ``SROutput``).
        compare: write a side-by-side PNG (MATLAB bicubic | model).
        max_pixels: refuse inputs larger than this (decompression bombs).
        overwrite: replace existing output files. Without it an input whose output exists
            is skipped (``exists`` is set) and the file is left as it is. An input file
            is never overwritten, even with ``overwrite``.
        progress: show a rich progress bar over files and tiles (on ``console``).
        self_ensemble: run the model as its x8 geometric self-ensemble
            (:class:`~gradguide.infer.ensemble.SelfEnsemble`): 8x the compute.

    Returns:
        one :class:`UpscaleResult` per input file, in order; unreadable files, and files
        whose output would be non-finite or would replace an input, have ``error`` set
        and no output.

    Raises:
        BatchStopped: nothing more can be written to ``out_dir`` (disk full, read-only,
            permission denied); its ``results`` say what was written before.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..imageio import read_image, write_image

    console = console or Console(stderr=True, soft_wrap=True)
    resolve_device(device)
    resolve_dtype(precision)
    parse_memory(max_memory)  # a bad --max-memory fails before any file is read
    net = resolve_model(model, scale)
    check_scale(net, scale, model if not isinstance(model, nn.Module) else "the model")
    if self_ensemble:
        net = SelfEnsemble(net)
    s = model_scale(net, scale)
    files, results, problems = _expand_inputs(inputs, console)
    if not files:
        raise ImageReadError("; ".join(problems) if problems else "no input images given")
    for msg in problems:
        console.print(f"[yellow]skipped:[/yellow] {_escape(msg)}", highlight=False)
    out = Path(out_dir)
    prepare_out_dir(out)
    inputs_real = {_real(f) for f in files}
    used: set[str] = set()
    prog = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not progress or not console.is_terminal, transient=False,
    )

    def skip(res: UpscaleResult, msg: str) -> None:
        res.error = msg
        console.print(f"[yellow]skipped:[/yellow] {_escape(msg)}", highlight=False)

    with prog:
        t_files = prog.add_task("files", total=len(files))
        t_tiles = prog.add_task("tiles", total=1)
        for k, f in enumerate(files):
            res = UpscaleResult(input=f)
            t0 = time.perf_counter()
            prog.update(t_files, description=f"files [dim]{_escape(f.name)}[/dim]")
            stem = _unique_name(f.stem + suffix, used)
            targets = {"sr": out / f"{stem}.png"}
            if save_grad:
                targets["grad"] = out / f"{stem}_grad.png"
            if compare:
                targets["compare"] = out / f"{stem}_compare.png"
            clash = next((t for t in targets.values() if _real(t) in inputs_real), None)
            existing = next((t for t in targets.values() if os.path.lexists(t)), None)
            try:
                if clash is not None:
                    skip(res, f"{f}: its output {clash} would overwrite an input file (choose another -o or a --suffix)")
                elif existing is not None and not overwrite:
                    res.exists = existing
                    console.print(f"[cyan]exists:[/cyan] {_escape(str(existing))} (kept; --overwrite replaces it)", highlight=False)
                else:
                    img = read_image(f, max_pixels=max_pixels)
                    prog.reset(t_tiles, total=1)

                    def on_tile(done: int, total: int) -> None:
                        prog.update(t_tiles, completed=done, total=total)

                    def on_retry(new_tile: int, exc: BaseException) -> None:
                        console.print(f"[yellow]{_escape(str(f))}: out of memory, retrying with --tile {new_tile}[/yellow]", highlight=False)

                    r = upscale_image(
                        net, img.rgb, scale=s, bit_depth=img.bit_depth, grey=img.is_grey, alpha=img.alpha,
                        with_grad=save_grad, with_compare=compare, tile=tile, overlap=overlap, device=device,
                        precision=precision, on_tile=on_tile, on_retry=on_retry, max_memory=max_memory,
                    )
                    res.size = (r["sr"].shape[0], r["sr"].shape[1])
                    res.tile = r["tile"]
                    res.output = write_image(targets["sr"], r["sr"], overwrite=overwrite)
                    if save_grad:
                        if r["grad"] is None:
                            console.print(f"[yellow]{_escape(str(f))}: the model returns no gradient map; --save-grad ignored[/yellow]", highlight=False)
                        else:
                            res.grad = write_image(targets["grad"], r["grad"], overwrite=overwrite)
                    if compare:
                        res.compare = write_image(targets["compare"], r["compare"], overwrite=overwrite)
            except (ImageReadError, NonFiniteError, TileOOMError) as exc:
                msg = str(exc) if isinstance(exc, ImageReadError) else f"{f}: {exc}"
                skip(res, msg)
            except FileExistsError as exc:  # created by someone else while we ran the model
                res.exists = Path(exc.filename or targets["sr"])
                console.print(f"[cyan]exists:[/cyan] {_escape(str(res.exists))} (kept; --overwrite replaces it)", highlight=False)
            except OSError as exc:
                if exc.errno in FATAL_WRITE_ERRNOS:
                    results.append(res)
                    done = [x for x in results if x.written]
                    left = len(files) - k - (1 if res.written else 0)
                    failed = Path(exc.filename).name if exc.filename else targets["sr"].name
                    names = ", ".join(x.output.name for x in done[:8]) + (f" +{len(done) - 8} more" if len(done) > 8 else "")
                    raise BatchStopped(
                        f"-o {out}: {os_reason(exc)} while writing {failed}; stopped with "
                        f"{len(done)} written{f' ({names})' if done else ''}, {left} not written",
                        results,
                    ) from None
                skip(res, f"{f}: cannot write {targets['sr']} ({os_reason(exc)})")
            except MemoryError:
                skip(res, f"{f}: not enough memory for a {res.size or 'this'} output (try --tile auto or a smaller --max-pixels)")
            except (RuntimeError, ValueError) as exc:
                if isinstance(exc, GradguideError) and not isinstance(exc, ImageReadError):
                    raise  # a model/argument problem: every file would fail the same way
                skip(res, f"{f}: {one_line(exc)}")
            res.seconds = time.perf_counter() - t0
            results.append(res)
            prog.advance(t_files)
    return results


def _real(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return p.absolute()


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)
