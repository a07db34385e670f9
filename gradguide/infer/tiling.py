"""Tiled, streaming, blended inference for any SR model.

The whole LR image stays in CPU memory; one tile at a time is copied to the device,
run, and copied back. Finished rows of the output leave the engine as *bands* through
a sink (so ``upscale`` writes them straight into a ``uint8``/``uint16`` array and never
holds a float32 copy of the full output).

Blending. Tiles overlap by ``overlap`` LR pixels. Along each axis a tile's weight is
a smooth window of the distance ``d`` (output pixels) to each edge that was *cut* (an
edge on the image border is not cut and gets full weight)::

    w(d) = 0                                   d <  pad            (discarded margin)
         = sin^2(pi/2 * (d - pad + 0.5) / blend)   pad <= d < pad + blend
         = 1                                   otherwise

with ``pad = overlap // 4`` and ``blend = overlap - 2 * pad`` (times the scale at the
output). In a regular overlap the two windows sum to exactly 1 (sin^2 + cos^2); the
output is ``sum(w * tile) / sum(w)`` with the 2-D weight ``w_y(y) * w_x(x)`` (tiles form
a grid, so the normaliser is separable and costs two 1-D vectors, not an image).

The trade-off: every output pixel that gets weight is at least ``pad`` LR pixels from a
cut edge, so it sees that much true context; a network whose effective receptive field
is wider than ``pad`` differs from the untiled result near tile seams, smoothly (no
visible seam) but measurably. Larger ``overlap`` costs ``((tile) / (tile - overlap))^2``
times the compute. See docs/inference.md for measurements.

Out of memory. An OOM from the device (CUDA, MPS, or the CPU allocator) restarts the
image with half the tile size, down to ``min_tile``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Union

import torch
from torch import Tensor, nn

from ..errors import InferenceError, TileOOMError
from ..types import SROutput

__all__ = [
    "PRECISIONS",
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "TileOOMError",
    "InferenceError",
    "split_output",
    "model_scale",
    "resolve_device",
    "resolve_dtype",
    "tile_starts",
    "edge_window",
    "tiled_forward",
    "run_tiles",
    "is_oom",
]

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: default tile side in LR pixels (input), and overlap between neighbouring tiles
DEFAULT_TILE = 128
DEFAULT_OVERLAP = 32


def split_output(out: Union[Tensor, SROutput, tuple]) -> tuple[Tensor, Optional[Tensor]]:
    """``(sr, grad)`` from a model output: a Tensor, an :class:`SROutput` or a tuple."""
    if isinstance(out, Tensor):
        return out, None
    if isinstance(out, (tuple, list)) and len(out) >= 1 and isinstance(out[0], Tensor):
        grad = out[1] if len(out) > 1 and isinstance(out[1], Tensor) else None
        return out[0], grad
    raise TypeError(f"model output must be a Tensor or SROutput(sr, grad, lr_grad), got {type(out).__name__}")


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``cpu``, ``cuda[:n]`` or ``mps``; refuses a device that is not available."""
    d = torch.device(device or "cpu")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"--device {device}: CUDA is not available on this machine")
    if d.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InferenceError(f"--device {device}: MPS is not available on this machine")
    if d.type not in ("cpu", "cuda", "mps"):
        raise InferenceError(f"--device {device}: must be cpu, cuda or mps")
    return d


def resolve_dtype(precision: Union[str, torch.dtype]) -> torch.dtype:
    if isinstance(precision, torch.dtype):
        if precision not in PRECISIONS.values():
            raise InferenceError(f"--precision {precision}: must be one of {sorted(PRECISIONS)}")
        return precision
    if precision not in PRECISIONS:
        raise InferenceError(f"--precision {precision}: must be one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision]


def model_scale(model: nn.Module, override: Optional[int] = None, *, device=None, dtype=None) -> int:
    """The integer upscaling factor: ``override``, else ``model.scale``, else a probe run."""
    if override is not None:
        if int(override) < 1:
            raise InferenceError(f"--scale {override}: must be a positive integer")
        return int(override)
    s = getattr(model, "scale", None)
    if isinstance(s, int) and s >= 1:
        return s
    p = next(iter(model.parameters()), None)
    x = torch.rand(1, 3, 16, 16, device=device or (p.device if p is not None else "cpu"), dtype=dtype or (p.dtype if p is not None else torch.float32))
    with torch.no_grad():
        sr, _ = split_output(model(x))
    s = sr.shape[-1] / 16
    if s != int(s) or sr.shape[-2] != int(s) * 16:
        raise InferenceError(f"cannot infer the model's scale: 16x16 input gave {tuple(sr.shape[-2:])}; pass --scale")
    return int(s)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride < 1:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def edge_window(n: int, *, cut_lo: bool, cut_hi: bool, pad: float, blend: float, dtype=torch.float32) -> Tensor:
    """1-D blending window of length ``n`` (see module doc); ``pad``/``blend`` in samples."""
    d = torch.arange(n, dtype=torch.float64)

    def ramp(dist: Tensor) -> Tensor:
        if blend <= 0:
            return (dist >= pad).to(torch.float64)
        t = ((dist - pad + 0.5) / blend).clamp(0, 1)
        w = torch.sin(0.5 * math.pi * t) ** 2
        return torch.where(dist < pad, torch.zeros_like(w), w)

    w = torch.ones(n, dtype=torch.float64)
    if cut_lo:
        w = w * ramp(d)
    if cut_hi:
        w = w * ramp(n - 1 - d)
    return w.to(dtype)


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory errors of CUDA, MPS or the CPU allocator."""
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or type(exc).__name__ == "OutOfMemoryError":
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg)


class BandSink(Protocol):
    def __call__(self, y0: int, y1: int, sr: Tensor, grad: Optional[Tensor]) -> None: ...


def keep_grey(lr: Tensor, sink: BandSink) -> BandSink:
    """Wrap ``sink`` so that a greyscale input (R = G = B exactly, per image) gets a
    greyscale output: the SR band's channels are replaced by their mean, so a network's
    small colour noise never tints a grey photo. Colour images pass through unchanged."""
    if lr.shape[1] != 3:
        return sink
    grey = ((lr[:, 0] == lr[:, 1]) & (lr[:, 1] == lr[:, 2])).flatten(1).all(dim=1)
    if not bool(grey.any()):
        return sink

    def grey_sink(y0: int, y1: int, sr: Tensor, grad: Optional[Tensor]) -> None:
        sr = torch.where(grey.view(-1, 1, 1, 1).to(sr.device), sr.mean(dim=1, keepdim=True).expand_as(sr), sr)
        sink(y0, y1, sr, grad)

    return grey_sink


def run_tiles(
    model: nn.Module,
    lr: Tensor,
    sink: BandSink,
    *,
    scale: int,
    tile: Optional[int] = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    precision: Union[str, torch.dtype] = "fp32",
    with_grad: bool = False,
    min_tile: int = 32,
    on_tile: Optional[Callable[[int, int], None]] = None,
    on_retry: Optional[Callable[[int, BaseException], None]] = None,
) -> int:
    """Run ``model`` over ``lr`` tile by tile and hand finished output rows to ``sink``.

    Args:
        model: returns a Tensor or ``SROutput``; it is moved to ``device``/``precision``.
        lr: ``(B, C, H, W)`` float images in ``[0, 1]`` (kept where they are, usually CPU).
        sink: called as ``sink(y0, y1, sr_band, grad_band)`` with float32 CPU bands
            ``(B, C, y1 - y0, scale * W)``, top to bottom; after an OOM restart the rows
            come again from the top.
        tile: tile side in LR pixels; ``None`` or ``0`` for one tile (untiled).
        overlap: LR pixels shared by neighbouring tiles (see module doc).
        with_grad: also blend and emit the gradient map (``None`` if the model has none).
        on_tile: ``on_tile(done, total)`` after each tile.
        on_retry: ``on_retry(new_tile, exc)`` when an OOM halves the tile size.

    Returns:
        the tile size that succeeded.
    """
    if lr.ndim != 4:
        raise ValueError(f"lr must have shape (B, C, H, W), got {tuple(lr.shape)}")
    dev = resolve_device(device)
    dtype = resolve_dtype(precision)
    if overlap < 0:
        raise InferenceError(f"--overlap {overlap}: must be >= 0")
    h, w = lr.shape[-2:]
    cur = max(h, w) if not tile else int(tile)
    if cur <= overlap and cur < max(h, w):
        raise InferenceError(f"--tile {cur}: must be larger than the overlap ({overlap})")
    model = model.to(device=dev, dtype=dtype).eval()
    sink = keep_grey(lr, sink)
    while True:
        try:
            _run_grid(model, lr, sink, scale, cur, overlap, dev, dtype, with_grad, on_tile)
            return cur
        except Exception as exc:  # noqa: BLE001 - only OOM is retried
            if not is_oom(exc):
                raise
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            nxt = cur // 2
            if nxt < max(min_tile, overlap + 1):
                raise TileOOMError(f"out of memory even with --tile {cur} (overlap {overlap}); use a smaller overlap or another device") from None
            if on_retry is not None:
                on_retry(nxt, exc)
            cur = nxt


def _run_grid(model, lr, sink, s, tile, overlap, dev, dtype, with_grad, on_tile) -> None:
    b, _, h, w = lr.shape
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    pad = (overlap // 4) * s
    blend = (overlap - 2 * (overlap // 4)) * s
    wx = [edge_window(tw * s, cut_lo=x0 > 0, cut_hi=x0 + tw < w, pad=pad, blend=blend) for x0 in xs]
    wsum_x = torch.zeros(w * s, dtype=torch.float32)
    for x0, win in zip(xs, wx):
        wsum_x[x0 * s : (x0 + tw) * s] += win
    total, done = len(ys) * len(xs), 0
    p0 = 0  # first HR row not yet handed to the sink
    acc: Optional[Tensor] = None  # pending rows [p0, p0 + rows) of sum(w * sr)
    acc_g: Optional[Tensor] = None
    saw_grad = False
    wsum_y = torch.zeros(0)
    for r, y0 in enumerate(ys):
        wy = edge_window(th * s, cut_lo=y0 > 0, cut_hi=y0 + th < h, pad=pad, blend=blend)
        end = (y0 + th) * s
        grow = end - p0 - wsum_y.shape[0]
        if grow > 0:
            wsum_y = torch.cat([wsum_y, torch.zeros(grow)])
        wsum_y[y0 * s - p0 : end - p0] += wy
        for x0, wxx in zip(xs, wx):
            x = lr[..., y0 : y0 + th, x0 : x0 + tw].to(device=dev, dtype=dtype)
            with torch.no_grad():
                sr, grad = split_output(model(x))
            if sr.shape[-2:] != (th * s, tw * s):
                raise InferenceError(f"model output {tuple(sr.shape[-2:])} for a {th}x{tw} tile is not x{s}; pass the right --scale")
            oc = sr.shape[1]
            rows = end - p0
            if acc is None or acc.shape[-2] < rows:
                have = 0 if acc is None else acc.shape[-2]
                extra = torch.zeros(b, oc, rows - have, w * s)
                acc = extra if acc is None else torch.cat([acc, extra], dim=-2)
                if with_grad:
                    extra_g = torch.zeros(b, oc, rows - have, w * s)
                    acc_g = extra_g if acc_g is None else torch.cat([acc_g, extra_g], dim=-2)
            weight = wy[:, None] * wxx[None, :]
            ys_, xs_ = slice(y0 * s - p0, end - p0), slice(x0 * s, (x0 + tw) * s)
            acc[..., ys_, xs_] += sr.float().cpu() * weight
            if with_grad and grad is not None:
                saw_grad = True
                acc_g[..., ys_, xs_] += grad.float().cpu() * weight
            done += 1
            if on_tile is not None:
                on_tile(done, total)
        # rows above the next tile row's start get no more contributions
        fin = (ys[r + 1] * s) if r + 1 < len(ys) else h * s
        n = fin - p0
        if n > 0:
            norm = wsum_y[:n, None] * wsum_x[None, :]
            band = acc[..., :n, :] / norm
            band_g = acc_g[..., :n, :] / norm if saw_grad else None
            sink(p0, fin, band, band_g)
            acc = acc[..., n:, :].clone()
            if acc_g is not None:
                acc_g = acc_g[..., n:, :].clone()
            wsum_y = wsum_y[n:].clone()
            p0 = fin


def tiled_forward(
    model: nn.Module,
    lr: Tensor,
    *,
    scale: Optional[int] = None,
    tile: Optional[int] = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    precision: Union[str, torch.dtype] = "fp32",
    with_grad: bool = False,
    min_tile: int = 32,
) -> tuple[Tensor, Optional[Tensor]]:
    """Tiled inference returning full float32 CPU tensors ``(sr, grad)``.

    ``lr``: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]``. ``grad`` is ``None`` unless
    ``with_grad`` and the model returns one. See :func:`run_tiles` for the arguments.
    """
    squeeze = lr.ndim == 3
    if squeeze:
        lr = lr[None]
    s = model_scale(model, scale)
    b, c, h, w = lr.shape
    out: dict[str, Optional[Tensor]] = {"sr": None, "grad": None}

    def sink(y0: int, y1: int, sr: Tensor, grad: Optional[Tensor]) -> None:
        if out["sr"] is None:
            out["sr"] = torch.empty(b, sr.shape[1], h * s, w * s)
        out["sr"][..., y0:y1, :] = sr
        if grad is not None:
            if out["grad"] is None:
                out["grad"] = torch.empty(b, grad.shape[1], h * s, w * s)
            out["grad"][..., y0:y1, :] = grad

    run_tiles(model, lr, sink, scale=s, tile=tile, overlap=overlap, device=device, precision=precision, with_grad=with_grad, min_tile=min_tile)
    sr, grad = out["sr"], out["grad"]
    if squeeze:
        sr = sr[0]
        grad = grad[0] if grad is not None else None
    return sr, grad
