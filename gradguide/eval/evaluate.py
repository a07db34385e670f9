"""``gradguide.evaluate``: the paper's Table 1 protocol over datasets and models.

For each dataset folder and each model (``"bicubic"``, a checkpoint path, or an
``nn.Module``): read every HR image, crop it to a multiple of the scale, make the LR
image with MATLAB bicubic on ``uint8`` (or read it from a paired folder), super-resolve,
round to ``uint8`` and measure PSNR-Y, SSIM-Y, LPIPS, NIQE, GMSD and the gradient-map
L1 with a border crop equal to the scale. See :class:`gradguide.eval.protocol.Protocol`.

A metric that cannot be computed is *skipped with a note*, never filled with a number:
LPIPS without local trunk weights, PI without Ma et al.'s model, NIQE on images
smaller than one 96x96 block. Unreadable images are skipped with a note too.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..errors import DataError, GradguideError, ImageReadError
from ..imageio import to_uint8_hwc
from .protocol import METRICS, NO_REFERENCE, EvalError, Protocol

__all__ = ["ImageScores", "DatasetResult", "EvalReport", "evaluate", "find_pairs", "bicubic_lr", "BICUBIC"]

PathLike = Union[str, os.PathLike]
BICUBIC = "bicubic"


@dataclass
class ImageScores:
    name: str
    metrics: dict[str, Optional[float]] = field(default_factory=dict)
    error: Optional[str] = None


@dataclass
class DatasetResult:
    dataset: str
    method: str
    path: str
    images: list[ImageScores] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def mean(self) -> dict[str, Optional[float]]:
        """Mean over images of each metric; ``None`` where no image has the metric."""
        out: dict[str, Optional[float]] = {}
        for m in METRICS:
            vals = [im.metrics[m] for im in self.images if im.error is None and im.metrics.get(m) is not None]
            vals = [v for v in vals if not math.isnan(v)]
            out[m] = float(np.mean(vals)) if vals else None
        return out


@dataclass
class EvalReport:
    protocol: Protocol
    methods: list[str]
    datasets: list[str]
    results: dict[str, dict[str, DatasetResult]]  # dataset -> method -> result
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol.to_dict(),
            "methods": self.methods,
            "notes": self.notes,
            "datasets": {
                ds: {
                    m: {
                        "path": r.path,
                        "mean": r.mean,
                        "notes": r.notes,
                        "images": [{"name": i.name, "error": i.error, **{k: i.metrics.get(k) for k in METRICS}} for i in r.images],
                    }
                    for m, r in per.items()
                }
                for ds, per in self.results.items()
            },
        }


def _lr_key(stem: str, scale: int) -> str:
    return re.sub(rf"[_\-.]?[xX]{scale}$", "", stem)


def find_pairs(folder: PathLike, scale: int) -> tuple[list[Path], dict[str, Path]]:
    """HR files of a dataset folder and, if it is a paired layout, their LR files.

    Layouts: a folder of HR images; or ``HR/`` beside ``LR/``, ``LR/X{s}/``,
    ``LR_bicubic/X{s}/`` (LR stems may end in ``x{s}``). Returns ``(hr_files, lr_by_stem)``.
    """
    from ..imageio import list_images

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--data {root}: not a folder")
    hr_dir = root / "HR"
    if hr_dir.is_dir():
        for cand in (root / "LR_bicubic" / f"X{scale}", root / "LR" / f"X{scale}", root / "LR_bicubic", root / "LR"):
            if cand.is_dir() and list(cand.iterdir()):
                lr = {_lr_key(p.stem, scale): p for p in list_images([str(cand)])}
                return list_images([str(hr_dir)]), lr
        raise DataError(f"--data {root}: has HR/ but no LR/, LR/X{scale}/ or LR_bicubic/X{scale}/ folder")
    files = list_images([str(root)])
    if not files:
        raise DataError(f"--data {root}: no image files")
    return files, {}


_u8 = to_uint8_hwc  # (3, H, W) float [0, 1] -> (H, W, 3) uint8, round half up


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]


def evaluate(
    models: Union[Sequence[Union[str, PathLike, nn.Module]], Mapping[str, Union[str, PathLike, nn.Module]], str, nn.Module],
    data: Union[PathLike, Sequence[PathLike]],
    *,
    scale: Optional[int] = None,
    metrics: Optional[Sequence[str]] = None,
    lpips_net: str = "alex",
    lpips_weights: Optional[PathLike] = None,
    lpips_random_backbone: bool = False,
    require_lpips: bool = False,
    device: str = "cpu",
    precision: str = "fp32",
    tile: Optional[int] = None,
    overlap: int = 64,
    max_images: Optional[int] = None,
    progress: bool = False,
    console=None,
    no_reference: bool = False,
    lr_cache: Optional[PathLike] = None,
    self_ensemble: bool = False,
) -> EvalReport:
    """Evaluate models on datasets under the SR protocol (the API behind ``gradguide eval``).

    Args:
        models: ``"bicubic"``, checkpoint paths, modules, or a mapping name -> any of those.
        data: dataset folders (see :func:`find_pairs` for paired layouts).
        scale: the SR factor; default: the first model's ``scale``, else 4.
        metrics: subset of :data:`gradguide.eval.protocol.METRICS` (default all).
        lpips_net: ``"alex"`` (default) or ``"vgg"``.
        lpips_weights: trunk weights file; default: the torch hub cache.
        lpips_random_backbone: random trunk (wiring tests only; labelled in the notes).
        require_lpips: raise instead of skipping LPIPS when weights are missing.
        tile: tile the SR forward pass (default: whole image, tiled only on OOM).
        no_reference: the folders hold real LR photos with no HR (or, in a paired layout,
            only the LR side is used): super-resolve them and report only the metrics of
            :data:`~gradguide.eval.protocol.NO_REFERENCE` (NIQE) on the outputs.
        lr_cache: folder for the bicubic LR images made from HR (one ``.npy`` per image,
            per dataset and scale, keyed by the HR file's size and mtime), so later runs
            read them instead of resizing again; default ``$GRADGUIDE_LR_CACHE``, else none.
        self_ensemble: run every model (not bicubic) as its x8 geometric self-ensemble
            (:class:`~gradguide.infer.ensemble.SelfEnsemble`, 8x the compute); its name
            gets ``+x8``.

    Returns:
        an :class:`EvalReport`; render it with :mod:`gradguide.eval.report`.
    """
    from ..data.imresize import imresize
    from ..imageio import read_image
    from ..infer.tiling import model_scale, resolve_device, resolve_dtype, tiled_forward
    from ..infer.ensemble import SelfEnsemble
    from ..infer.upscale import resolve_model
    from . import metrics as M
    from .lpips_metric import LPIPSWeightsMissing, create_lpips, lpips_distance
    from .niqe import niqe as niqe_fn

    wanted = tuple((NO_REFERENCE if no_reference else METRICS) if metrics is None else metrics)
    bad = [m for m in wanted if m not in METRICS]
    if bad:
        raise EvalError(f"--metrics: unknown {bad}; choose from {list(METRICS)}")
    if no_reference and any(m not in NO_REFERENCE for m in wanted):
        need_hr = [m for m in wanted if m not in NO_REFERENCE]
        raise EvalError(f"--no-reference: {', '.join(need_hr)} need HR images; without them only {', '.join(NO_REFERENCE)} can be computed")
    resolve_device(device)
    resolve_dtype(precision)
    if isinstance(models, (str, os.PathLike, nn.Module)):
        models = [models]
    if isinstance(models, Mapping):
        named = list(models.items())
    else:
        named = []
        for m in models:
            if isinstance(m, nn.Module):
                name = getattr(m, "name", None) or type(m).__name__
            elif str(m) == BICUBIC:
                name = "Bicubic"
            else:
                name = Path(m).stem
            named.append((name, m))
    if not named:
        raise EvalError("no MODEL given")
    if len({n for n, _ in named}) != len(named):
        raise EvalError(f"MODEL names must be unique, got {[n for n, _ in named]}")
    loaded: list[tuple[str, Optional[nn.Module]]] = []
    for name, m in named:
        net = None if (isinstance(m, str) and m == BICUBIC) else resolve_model(m, scale)
        if net is not None and self_ensemble:
            name, net = f"{name}+x8", SelfEnsemble(net)
        loaded.append((name, net))
    if scale is None:
        nets = [m for _, m in loaded if m is not None]
        scale = model_scale(nets[0]) if nets else 4
    for name, m in loaded:
        if m is not None:
            s = model_scale(m, None)
            if s != scale:
                raise EvalError(f"MODEL {name}: scale x{s} differs from --scale {scale}")
    crop = int(scale)
    notes: list[str] = []
    unrequested = [m for m in METRICS if m not in wanted]
    if no_reference:
        notes.append(f"no reference (real LR inputs, no HR): {', '.join(m for m in METRICS if m not in NO_REFERENCE)} not computed")
    elif unrequested:
        notes.append(f"not requested (metrics=...): {', '.join(unrequested)}")
    lpips_model = None
    protocol = Protocol(scale=scale, crop=crop)
    if no_reference:
        protocol = Protocol(scale=scale, crop=crop, reference="none: the inputs are LR images without HR; "
                            "no-reference metrics on the SR outputs (border crop = scale)")
    if "LPIPS" in wanted:
        try:
            lpips_model = create_lpips(lpips_net, weights=lpips_weights, random_backbone=lpips_random_backbone)
            if lpips_random_backbone:
                notes.append(f"LPIPS uses a RANDOM {lpips_net} trunk (pnet_rand): wiring check only, not comparable to published LPIPS")
            protocol = Protocol(scale=scale, crop=crop, lpips=f"lpips 0.1, {lpips_net} trunk{' (RANDOM, not comparable)' if lpips_random_backbone else ''}, RGB in [-1, 1]")
        except LPIPSWeightsMissing as exc:
            if require_lpips:
                raise
            notes.append(f"LPIPS skipped: {exc}")
    if "PI" in wanted:
        notes.append("PI missing: Ma et al.'s no-reference model is not available in gradguide (PI = ((10 - Ma) + NIQE) / 2); NIQE is reported")

    datasets = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not progress)
    prog.start()
    try:
        if no_reference:
            return _run_no_reference(datasets, loaded, scale, crop, wanted, protocol, notes, max_images, tile, overlap,
                                     device, precision, console, prog)
        return _run(datasets, loaded, scale, crop, wanted, lpips_model, protocol, notes, max_images, tile, overlap,
                    device, precision, console, prog, lr_cache=lr_cache or os.environ.get("GRADGUIDE_LR_CACHE") or None)
    finally:
        prog.stop()


def bicubic_lr(hr_file: Path, hr: np.ndarray, scale: int, cache: Optional[PathLike] = None) -> np.ndarray:
    """MATLAB-bicubic LR ``(h, w, 3)`` uint8 of ``hr`` (already cropped to the scale), read
    from / written to ``cache`` when given: ``<cache>/<dataset>-<hash of its folder>/x<scale>/
    <stem>-<mtime_ns>-<size>.npy``. A changed HR file gets a new key; a bad entry is remade."""
    from ..data.imresize import imresize

    if not cache:
        return imresize(hr, 1.0 / scale)
    import hashlib

    folder = hr_file.resolve().parent
    st = hr_file.stat()
    tag = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    path = Path(cache) / f"{folder.name}-{tag}" / f"x{scale}" / f"{hr_file.name}-{st.st_mtime_ns}-{st.st_size}.npy"
    want = (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    try:
        lr = np.load(path, allow_pickle=False)
        if lr.shape == want and lr.dtype == np.uint8:
            return lr
    except (OSError, ValueError):
        pass
    lr = imresize(hr, 1.0 / scale)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, lr, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache still works, it only does not fill
    return lr


def _batched_metrics(srs: list[torch.Tensor], hr: "ImageFeatures", wanted, crop: int, dev) -> tuple[dict[str, list], list[tuple[str, str]]]:
    """Every wanted metric of :mod:`gradguide.eval.features` for the SR images of all
    methods (one batch) against one HR image: ``({metric: [value per SR]}, [(metric, why skipped)])``."""
    from .features import NR_METRICS, PAIR_METRICS, ImageFeatures

    out: dict[str, list] = {}
    notes: list[tuple[str, str]] = []
    if not srs:
        return out, notes
    sr = ImageFeatures((torch.cat(srs) if len(srs) > 1 else srs[0]).to(device=dev, dtype=torch.float64), crop)
    for m in wanted:
        if m in PAIR_METRICS:
            out[m] = PAIR_METRICS[m](sr, hr).tolist()
    want_nr = {("NIQE" if m == "PI" else m) for m in wanted} & set(NR_METRICS)
    for m in sorted(want_nr):
        try:
            out[m] = NR_METRICS[m](sr).tolist()
        except ValueError as exc:  # e.g. NIQE on an image smaller than one block
            notes.append((m, str(exc)))
    return out, notes


def _dataset_name(folder, results: dict) -> str:
    """The folder's name, made unique among the datasets already in ``results``."""
    ds = Path(folder).resolve().name
    base, k = ds, 2
    while ds in results:
        ds, k = f"{base}_{k}", k + 1
    return ds


def _super_resolve(net, lr: np.ndarray, scale: int, tile, overlap, device, precision) -> np.ndarray:
    """``(H, W, 3)`` uint8 LR -> uint8 SR: MATLAB bicubic for ``net=None``, else the model (tiled)."""
    from ..infer.tiling import tiled_forward
    from .features import bicubic_upscale

    if net is None:
        return bicubic_upscale(lr, scale)  # = imresize(lr, scale) bit for bit, float32 where exact
    lr_f = torch.from_numpy(lr).permute(2, 0, 1).float().div(255.0)[None]
    out, _ = tiled_forward(net, lr_f, scale=scale, tile=tile, overlap=overlap, device=device, precision=precision)
    return _u8(out[0])


def _run(datasets, loaded, scale, crop, wanted, lpips_model, protocol, notes, max_images, tile, overlap,
         device, precision, console, prog, lr_cache: Optional[PathLike] = None) -> EvalReport:
    from ..imageio import read_image
    from . import metrics as M
    from .features import ImageFeatures
    from .lpips_metric import lpips_distance

    mdev = torch.device(device)  # metrics run on the model's device

    results: dict[str, dict[str, DatasetResult]] = {}
    ds_names: list[str] = []
    for folder in datasets:
        hr_files, lr_map = find_pairs(folder, scale)
        if max_images:
            hr_files = hr_files[:max_images]
        ds = _dataset_name(folder, results)
        ds_names.append(ds)
        results[ds] = {name: DatasetResult(dataset=ds, method=name, path=str(folder)) for name, _ in loaded}
        task = prog.add_task(ds, total=len(hr_files))
        for f in hr_files:
            prog.advance(task)
            try:
                hr_img = read_image(f)
                hr = _u8(hr_img.rgb)
                h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
                if h == 0 or w == 0:
                    raise DataError(f"{f}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale x{scale}")
                hr = hr[:h, :w]
                if lr_map:
                    key = f.stem
                    if key not in lr_map:
                        raise DataError(f"{f}: no LR partner in the paired folder")
                    lr = _u8(read_image(lr_map[key]).rgb)
                    if lr.shape[0] * scale > h + scale or lr.shape[0] * scale < h - scale:
                        raise DataError(f"{lr_map[key]}: LR size {lr.shape[:2]} does not match HR {hr.shape[:2]} at x{scale}")
                    h, w = min(h, lr.shape[0] * scale), min(w, lr.shape[1] * scale)
                    hr = hr[:h, :w]
                    lr = lr[: h // scale, : w // scale]
                else:
                    lr = bicubic_lr(f, hr, scale, lr_cache)
            except (ImageReadError, DataError) as exc:
                for name, _ in loaded:
                    results[ds][name].images.append(ImageScores(name=f.name, error=str(exc)))
                    results[ds][name].notes.append(f"skipped {f.name}: {exc}")
                if console is not None:
                    from rich.markup import escape

                    console.print(f"[yellow]skipped:[/yellow] {escape(str(exc))}", highlight=False)
                continue
            hr_t = _t(hr)
            # the HR side of every metric is computed once, for all methods
            hr_feat = ImageFeatures(hr_t.to(device=mdev, dtype=torch.float64), crop)
            pending: list[tuple[str, torch.Tensor]] = []
            for name, net in loaded:
                sr = _super_resolve(net, lr, scale, tile, overlap, device, precision)
                sr_t = _t(sr)
                if sr_t.shape != hr_t.shape:
                    err = f"{f.name}: SR size {tuple(sr_t.shape[-2:])} != HR size {tuple(hr_t.shape[-2:])}"
                    results[ds][name].images.append(ImageScores(name=f.name, error=err))
                    results[ds][name].notes.append(err)
                    continue
                pending.append((name, sr_t))
            # the registered metrics (gradguide.eval.features) for all methods in one batch
            fast, fast_notes = _batched_metrics([t for _, t in pending], hr_feat, wanted, crop, mdev)
            for k, (name, sr_t) in enumerate(pending):
                results[ds][name].notes.extend(f"{m} skipped for {f.name}: {why}" for m, why in fast_notes)
                sc = ImageScores(name=f.name)
                sc.metrics = {m: None for m in METRICS}
                sc.metrics.update({m: v[k] for m, v in fast.items()})
                if "CIEDE2000" in wanted:
                    sc.metrics["CIEDE2000"] = M.ciede2000(sr_t, hr_t, crop=crop).item()
                if "PSNR-RGB" in wanted:
                    sc.metrics["PSNR-RGB"] = M.psnr_rgb(sr_t, hr_t, crop=crop).item()
                if "PSNR-frame8" in wanted or "PSNR-inner8" in wanted or "Bias-frame8" in wanted:
                    try:
                        frame, inside, bias = M.frame_stats(sr_t, hr_t, width=8)
                        sc.metrics.update({"PSNR-frame8": frame.item(), "PSNR-inner8": inside.item(), "Bias-frame8": bias.item()})
                    except ValueError as exc:
                        results[ds][name].notes.append(f"PSNR-frame8 skipped for {f.name}: {exc}")
                if "LPIPS" in wanted and lpips_model is not None:
                    try:
                        sc.metrics["LPIPS"] = lpips_distance(sr_t, hr_t, lpips_model, crop=crop).item()
                    except RuntimeError as exc:  # e.g. smaller than the trunk's receptive field
                        results[ds][name].notes.append(f"LPIPS skipped for {f.name}: {str(exc).splitlines()[0]}")
                results[ds][name].images.append(sc)
    return EvalReport(protocol=protocol, methods=[n for n, _ in loaded], datasets=ds_names, results=results, notes=notes)


def _run_no_reference(datasets, loaded, scale, crop, wanted, protocol, notes, max_images, tile, overlap,
                      device, precision, console, prog) -> EvalReport:
    """Super-resolve real LR images (no HR) and measure the no-reference metrics."""
    from ..imageio import list_images, read_image
    from .niqe import niqe as niqe_fn

    results: dict[str, dict[str, DatasetResult]] = {}
    ds_names: list[str] = []
    for folder in datasets:
        root = Path(folder)
        if not root.is_dir():
            raise DataError(f"--data {root}: not a folder")
        files = sorted(find_pairs(root, scale)[1].values()) if (root / "HR").is_dir() else list_images([str(root)])
        if not files:
            raise DataError(f"--data {root}: no image files")
        if max_images:
            files = files[:max_images]
        ds = _dataset_name(root, results)
        ds_names.append(ds)
        results[ds] = {name: DatasetResult(dataset=ds, method=name, path=str(folder)) for name, _ in loaded}
        task = prog.add_task(ds, total=len(files))
        for f in files:
            prog.advance(task)
            try:
                lr = _u8(read_image(f).rgb)
            except ImageReadError as exc:
                for name, _ in loaded:
                    results[ds][name].images.append(ImageScores(name=f.name, error=str(exc)))
                    results[ds][name].notes.append(f"skipped {f.name}: {exc}")
                continue
            for name, net in loaded:
                sr = _super_resolve(net, lr, scale, tile, overlap, device, precision)
                sc = ImageScores(name=f.name, metrics={m: None for m in METRICS})
                if "NIQE" in wanted or "PI" in wanted:
                    try:
                        sc.metrics["NIQE"] = niqe_fn(_t(sr), crop=crop).item()
                    except ValueError as exc:
                        results[ds][name].notes.append(f"NIQE skipped for {f.name}: {exc}")
                results[ds][name].images.append(sc)
    return EvalReport(protocol=protocol, methods=[n for n, _ in loaded], datasets=ds_names, results=results, notes=notes)
