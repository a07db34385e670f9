"""Tiled, streaming, blended inference for any SR model.

The whole LR image stays in CPU memory; one tile at a time is copied to the device,
run, and copied back. Finished rows of the output leave the engine as *bands* through
a sink (so ``upscale`` writes them straight into a ``uint8``/``uint16`` array and never
holds a float32 copy of the full output).

Seams. Tiles overlap by ``overlap`` LR pixels. Along each axis a tile's weight is a
window of the distance ``d`` (output pixels) to each edge that was *cut* (an edge on the
image border is not cut and gets full weight)::

    w(d) = 0                                   d <  pad            (discarded margin)
         = sin^2(pi/2 * (d - pad + 0.5) / blend)   pad <= d < pad + blend
         = 1                                   otherwise

with ``pad = overlap // 2`` and ``blend = overlap - 2 * pad`` (0, or 1 for an odd
overlap; times the scale at the output): the seam lies in the middle of the overlap and
each side keeps ``overlap / 2`` LR pixels of true context. The output is
``sum(w * tile) / sum(w)`` with the 2-D weight ``w_y(y) * w_x(x)`` (tiles form a grid, so
the normaliser is separable and costs two 1-D vectors, not an image).

Why a seam and not a wide cross-fade: what decides the error against the untiled
result is the context the kept pixels had. Measured for the paper SPSR
(``bench/upscale_throughput.py``, docs/inference.md), the largest difference falls from
27 uint8 levels with no context to 0.9 with 2 LR px, 0.08 with 3 and 0.009 with 4; a
cross-fade over half the overlap spends half of it on blending and keeps only a
quarter as context, so it needs twice the overlap (and compute) for the same error.
The grid is balanced (:func:`balanced_tile`): the tiles are shrunk to split the image
evenly, so no tile hangs far over its neighbour.

Tile size. ``tile="auto"`` (the default) takes the largest tile whose estimated peak
memory fits a budget (:func:`plan_tile`; ``--max-memory``, default from the free memory)
and runs the image in one piece when it fits: see :func:`plan_tile`. On the CPU it also
stays at or below :data:`CPU_TILE` LR px: there, tiles under it with a 12 px overlap ran
faster than one large pass (``bench/upscale_throughput.py``, docs/inference.md).

Memory format. On the CPU each tile goes to the model as ``channels_last`` (NHWC): on top
of the tiling, 1.19x for RRDBNet + ``lr`` fusion at 512x512 (docs/inference.md). The
weights are left as they are (the model is not changed), and the output differs from an
NCHW run by float rounding only (about 1e-6). ``channels_last=False`` gives NCHW.

Out of memory. An OOM from the device (CUDA, MPS, or the CPU allocator) restarts the
image with half the tile size, down to ``min_tile``.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Union

import torch
from torch import Tensor, nn

from ..devices import resolve_device
from ..errors import InferenceError, TileOOMError
from ..types import SROutput, as_output

__all__ = [
    "PRECISIONS",
    "TILE_AUTO",
    "DEFAULT_TILE",
    "TilePlan",
    "plan_tile",
    "balanced_tile",
    "activation_bytes",
    "default_memory_budget",
    "parse_memory",
    "DEFAULT_OVERLAP",
    "CPU_TILE",
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
#: ``tile="auto"``: the largest tile whose estimated peak memory fits the budget
#: (``max_memory``, default :func:`default_memory_budget`); the whole image when it fits
TILE_AUTO = "auto"
#: default tile (LR pixels, or ``"auto"``) and overlap between neighbouring tiles; see
#: docs/inference.md for the measurements behind the overlap
DEFAULT_TILE: Union[int, str] = TILE_AUTO
DEFAULT_OVERLAP = 12
#: the tile side used before tiles were sized from memory (``bench/upscale_throughput.py``'s baseline)
LEGACY_TILE = 128
#: on the CPU, ``tile="auto"`` uses tiles of at most this many LR px. Measured with
#: ``bench/upscale_throughput.py`` on the 2-core CPU (docs/inference.md, same run each):
#: a 256x256 input in tiles under this cap took 0.62x the time of one untiled pass, and
#: the time per LR pixel (``--tile-sweep``) does not fall beyond 192 for the paper SPSR or
#: RRDBNet + ``lr`` fusion (64 to 256 within +-17 %, no trend), so larger tiles add memory
#: and cache misses but no speed
CPU_TILE = 192


def split_output(out: Union[Tensor, SROutput, tuple]) -> tuple[Tensor, Optional[Tensor]]:
    """``(sr, grad)`` from a model output: a Tensor, an :class:`SROutput` or a tuple
    (:func:`gradguide.types.as_output`)."""
    o = as_output(out)
    return o.sr, o.grad


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

# ---------------------------------------------------------------------------------
# tile size from a memory budget
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}
#: measured peak RSS of one tile over the traced live activations (paper SPSR, CPU, fp32):
#: 1.14 for a bare forward between tiles of 48 and 96 LR px, 1.31 for tile 148 inside
#: upscale_image (bench/upscale_memory.py, docs/performance.md); with margin
ACTIVATION_FACTOR = 1.5
#: per-process constant on top of the weights: weight copies in the conv library's
#: layout (oneDNN reorders on CPU, cuDNN workspaces on CUDA), measured ~1.2x the weights
WEIGHT_FACTOR = 1.5


def parse_memory(value: Union[int, float, str, None]) -> Optional[int]:
    """``3G``, ``2.5GiB``, ``512M``, ``1e9`` or an int -> bytes; ``None``/``""``/``0`` -> ``None``."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, (int, float)):
        if value < 0:
            raise InferenceError(f"--max-memory {value}: must be positive")
        return int(value)
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).upper() not in _UNITS:
        raise InferenceError(f"--max-memory {value!r}: expected bytes or a size like 3G, 2.5GiB, 512M")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()]) or None


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _rss() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def default_memory_budget(device: Union[str, torch.device] = "cpu") -> int:
    """What ``tile="auto"`` may use when no ``max_memory`` is given, in bytes.

    CPU: the process's current RSS plus half the memory the OS reports available
    (``MemAvailable``), so other programs keep the rest. CUDA: 80 % of the device's free
    memory plus what this process already holds there. Other devices: 4 GiB.
    """
    d = torch.device(device)
    if d.type == "cuda":
        free, _ = torch.cuda.mem_get_info(d)
        return int(0.8 * free) + torch.cuda.memory_allocated(d)
    if d.type == "cpu":
        return _rss() + _available_ram() // 2
    return 4 * 2**30


_ACT_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()  # model -> {key: bytes}


def activation_bytes(model: nn.Module, *, side: int = 32, channels: int = 3, dtype=torch.float32) -> float:
    """Peak bytes of live tensors during one ``no_grad`` forward of a ``side x side``
    input, counted on the meta device (no compute, no memory): every op's new outputs
    are added when created and removed when freed. Divide by ``side**2`` for bytes per
    LR pixel; it grows with the tile's area for convolutional and windowed models.
    Raises ``RuntimeError`` when the model cannot run on meta tensors."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    key = (side, channels, dtype)
    cached = _ACT_CACHE.setdefault(model, {})
    if key in cached:
        return cached[key]

    class _Live(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = self.peak = 0

        def _free(self, n: int) -> None:
            self.live -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view and not func._schema.name.endswith("_"):
                for t in tree_flatten(out)[0]:
                    if isinstance(t, Tensor):
                        n = t.untyped_storage().nbytes()
                        self.live += n
                        self.peak = max(self.peak, self.live)
                        weakref.finalize(t, self._free, n)
            return out

    state = {k: v.to("meta", dtype=dtype if v.is_floating_point() else v.dtype)
             for k, v in list(model.named_parameters()) + list(model.named_buffers())}
    x = torch.empty(1, channels, side, side, device="meta", dtype=dtype)
    with torch.no_grad(), _Live() as live:
        out = torch.func.functional_call(model, state, (x,))
    del out
    cached[key] = float(live.peak)
    return float(live.peak)


def balanced_tile(length: int, tile: int, overlap: int) -> int:
    """The smallest tile that covers ``length`` with as few tiles as ``tile`` needs.

    With ``n = ceil((length - overlap) / (tile - overlap))`` tiles, a side of
    ``ceil((length - overlap) / n) + overlap`` covers the same length, so no tile
    extends far over its neighbour (the last tile of a fixed grid usually does).
    """
    if length <= tile:
        return length
    n = -(-(length - overlap) // (tile - overlap))
    return min(tile, -(-(length - overlap) // n) + overlap)


@dataclass
class TilePlan:
    """What :func:`plan_tile` chose: ``tile`` (LR px, ``None`` = untiled) and the
    estimate it rests on (bytes)."""

    tile: Optional[int]
    budget: int
    fixed: int
    per_pixel: float
    estimated_peak: int
    note: str = ""


def plan_tile(
    model: nn.Module,
    lr_shape: tuple,
    *,
    scale: int,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    max_memory: Union[int, str, None] = None,
    with_grad: bool = False,
    min_tile: int = 32,
    max_tile: Optional[int] = None,
) -> TilePlan:
    """The largest tile whose estimated peak fits the budget, or ``None`` (untiled) when
    the whole image fits; never above ``max_tile`` (``None``: :data:`CPU_TILE` on the
    CPU, no bound elsewhere; ``0``: no bound).

    ``peak(t) = fixed + ACTIVATION_FACTOR * a * t^2 + bands(t)`` with ``a`` the traced
    activation bytes per LR pixel (:func:`activation_bytes`), ``fixed`` the process as
    it is now (CPU RSS, or CUDA memory in use) plus ``WEIGHT_FACTOR`` x the weights and,
    on CPU, the uint8 output image; ``bands(t)`` the float32 blending buffers (about 3
    tile-rows of output, twice with the gradient map), which live in CPU memory.
    """
    dev = torch.device(device)
    budget = parse_memory(max_memory) or default_memory_budget(dev)
    b, c, h, w = (int(v) for v in lr_shape)
    s = int(scale)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    if dev.type == "cuda":
        fixed = torch.cuda.memory_allocated(dev) + int(WEIGHT_FACTOR * weights)
    else:
        fixed = _rss() + int(WEIGHT_FACTOR * weights) + b * c * h * s * w * s  # + uint8 output
    try:
        per_px = b * activation_bytes(model, channels=c, dtype=dtype) / 32**2
        note = ""
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on meta tensors
        per_px = b * 120_000.0 * torch.finfo(dtype).bits / 32  # paper SPSR's figure, a safe default
        note = f"activation trace failed ({type(exc).__name__}); assumed {per_px / 1e3:.0f} kB per LR pixel"
    band_per_row = (2 if with_grad else 1) * 3 * b * c * w * s * s * 4 if dev.type == "cpu" else 0

    def peak(t: int) -> int:
        return int(fixed + ACTIVATION_FACTOR * per_px * t * t + band_per_row * t)

    whole = max(h, w)
    cap = (CPU_TILE if dev.type == "cpu" else 0) if max_tile is None else int(max_tile)
    if peak(whole) <= budget and (not cap or whole <= cap):
        return TilePlan(None, budget, fixed, per_px, peak(whole), note)
    lo = max(min_tile, overlap + 1)
    t = lo
    hi = min(whole, max(cap, lo)) if cap else whole
    while lo <= hi:  # largest t with peak(t) <= budget
        mid = (lo + hi) // 2
        if peak(mid) <= budget:
            t, lo = mid, mid + 1
        else:
            hi = mid - 1
    if peak(t) > budget:
        note = (note + "; " if note else "") + f"even the smallest tile ({t}) is estimated over the budget"
    return TilePlan(t, budget, fixed, per_px, peak(t), note)


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
    tile: Union[int, str, None] = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    precision: Union[str, torch.dtype] = "fp32",
    with_grad: bool = False,
    min_tile: int = 32,
    on_tile: Optional[Callable[[int, int], None]] = None,
    on_retry: Optional[Callable[[int, BaseException], None]] = None,
    max_memory: Union[int, str, None] = None,
    balance: bool = True,
    channels_last: Optional[bool] = None,
) -> int:
    """Run ``model`` over ``lr`` tile by tile and hand finished output rows to ``sink``.

    Args:
        model: returns a Tensor or ``SROutput``; it is moved to ``device``/``precision``.
        lr: ``(B, C, H, W)`` float images in ``[0, 1]`` (kept where they are, usually CPU).
        sink: called as ``sink(y0, y1, sr_band, grad_band)`` with float32 CPU bands
            ``(B, C, y1 - y0, scale * W)``, top to bottom; after an OOM restart the rows
            come again from the top.
        tile: tile side in LR pixels; ``None`` or ``0`` for one tile (untiled);
            ``"auto"`` sizes it from ``max_memory`` (see :func:`plan_tile`) and runs the
            image untiled when that fits.
        max_memory: memory budget for ``tile="auto"``, bytes or a string like ``"3G"``
            (default :func:`default_memory_budget`).
        balance: shrink the tiles so that they split the image evenly (same tile count,
            less overlap computed twice); ``False`` gives the fixed-size grid of old.
        overlap: LR pixels shared by neighbouring tiles (see module doc).
        with_grad: also blend and emit the gradient map (``None`` if the model has none).
        on_tile: ``on_tile(done, total)`` after each tile.
        on_retry: ``on_retry(new_tile, exc)`` when an OOM halves the tile size.
        channels_last: hand each tile to the model in ``channels_last`` memory format
            (``None``: on the CPU, where it is faster; see module doc).

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
    model = model.to(device=dev, dtype=dtype).eval()
    if isinstance(tile, str):
        if tile != TILE_AUTO:
            raise InferenceError(f"--tile {tile}: must be a number of LR pixels, 0 (whole image) or 'auto'")
        tile = plan_tile(model, lr.shape, scale=scale, overlap=overlap, device=dev, dtype=dtype,
                         max_memory=max_memory, with_grad=with_grad, min_tile=min_tile).tile
    cur = max(h, w) if not tile else int(tile)
    if cur <= overlap and cur < max(h, w):
        raise InferenceError(f"--tile {cur}: must be larger than the overlap ({overlap})")
    sink = keep_grey(lr, sink)
    call = _layout_call(model, dev.type == "cpu" if channels_last is None else bool(channels_last))
    while True:
        try:
            _run_grid(call, lr, sink, scale, cur, overlap, dev, dtype, with_grad, on_tile, balance)
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


def _layout_call(model: nn.Module, nhwc: bool) -> Callable[[Tensor], object]:
    """``model(x)`` with ``x`` in ``channels_last`` while that works (``nhwc``). A model
    that raises on an NHWC tile (say, a ``.view`` that assumes NCHW strides) gets that
    tile again as NCHW, and NCHW from then on; an error it also raises on NCHW propagates."""
    state = {"nhwc": nhwc}

    def call(x: Tensor):
        if state["nhwc"]:
            try:
                return model(x.contiguous(memory_format=torch.channels_last))
            except RuntimeError as exc:
                if is_oom(exc):
                    raise
                state["nhwc"] = False
        return model(x)

    return call


def _run_grid(model, lr, sink, s, tile, overlap, dev, dtype, with_grad, on_tile, balance=True) -> None:
    b, _, h, w = lr.shape
    if balance:
        th, tw = balanced_tile(h, tile, overlap), balanced_tile(w, tile, overlap)
    else:
        th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    pad = (overlap // 2) * s  # each side keeps overlap/2 LR px of context: a seam in the middle
    blend = (overlap - 2 * (overlap // 2)) * s  # odd overlaps blend over one LR pixel
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
                got = f"the model is x{sr.shape[-1] // tw}" if tw and sr.shape[-1] % tw == 0 and sr.shape[-2] == th * (sr.shape[-1] // tw) else f"the model gives {tuple(sr.shape[-2:])} for a {th}x{tw} tile"
                raise InferenceError(f"--scale {s}: {got}; pass the model's own scale (or leave --scale out)")
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
    tile: Union[int, str, None] = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: Union[str, torch.device] = "cpu",
    precision: Union[str, torch.dtype] = "fp32",
    with_grad: bool = False,
    min_tile: int = 32,
    max_memory: Union[int, str, None] = None,
    balance: bool = True,
    channels_last: Optional[bool] = None,
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

    run_tiles(model, lr, sink, scale=s, tile=tile, overlap=overlap, device=device, precision=precision, with_grad=with_grad,
              min_tile=min_tile, max_memory=max_memory, balance=balance, channels_last=channels_last)
    sr, grad = out["sr"], out["grad"]
    if squeeze:
        sr = sr[0]
        grad = grad[0] if grad is not None else None
    return sr, grad
