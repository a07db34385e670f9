"""``gradguide demo``: the main job on embedded data, offline.

1. **Headline.** The bundled default model (``gradguide.load("default")``, trained once
   on SunHays80; card: docs/model-default.md) against bicubic on held-out photos that
   ship with scikit-image (:data:`gradguide.data.datasets.DEMO_EVAL`: the colourful
   astronaut, coffee, cat and rocket, and the greyscale camera), centre crops
   of at most ``heldout_size`` px: PSNR/SSIM on Y, GMSD, gradient-map L1, colour error
   (CIEDE2000, PSNR-RGB) and the 8-px border frame, with NIQE. The result does not
   depend on how fast the machine is.
2. **A short fine-tuning segment**, clearly labelled: the ``default_x4`` recipe starts
   from the bundled weights and trains on scikit-image's other photos
   (:data:`~gradguide.data.datasets.DEMO_TRAIN`) for at most ``time_limit_s`` seconds,
   with a floor of ``min_iterations`` iterations so that even a slow machine does some
   (resumable: running the demo again continues in ``OUT/finetune``). It is evaluated
   next to the bundled model and headlines only if it beats it in PSNR-Y *and* GMSD.
3. ``OUT/comparison.png``: per photo ``bicubic | headline model | HR`` and their
   gradient maps ``M(.)`` (Eq. 2); ``OUT/metrics.json`` holds every number.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .bundled import DEFAULT_MODEL, bundled_model
from .checkpoints import load
from .data.datasets import ValidationDataset, demo_images
from .data.imresize import imresize
from .eval.evaluate import evaluate
from .eval.report import print_report, write_json
from .imageio import to_uint8_hwc, write_image
from .infer.upscale import upscale_image
from .ops import gradient_map
from .train.recipe import apply_overrides, resolve_recipe
from .train.trainer import STATE_FILE, train


__all__ = ["run_demo", "DemoResult", "DEMO_TIME_LIMIT_S", "DEMO_MIN_ITERATIONS", "comparison_grid"]

#: the fine-tuning segment's wall-clock budget (the whole demo is ~5 min on 2 quiet cores
#: after install, and stays near 10 min on a machine 4x slower)
DEMO_TIME_LIMIT_S = 90
#: ... and the iterations it does even when the time limit comes first
DEMO_MIN_ITERATIONS = 10
#: the most iterations the segment does on a fast machine
DEMO_MAX_ITERATIONS = 300
#: fine-tuning settings: small crops and batch (CPU), a small learning rate (the start is trained)
FINETUNE = (
    "data.source=skimage", "data.crop=64", "data.workers=0", "train.batch_size=4", "train.ema=0",
    "optim.lr_g=2e-5", "optim.milestones=[1000000]", "val.every=0", "train.checkpoint_every=25",
    "log.tensorboard=false",
)  # fmt: skip
HEADLINE_NAME = "gradguide default"
FINETUNED_NAME = "fine-tuned"


@dataclass
class DemoResult:
    out_dir: Path
    headline: str  # the method whose results headline the demo
    headline_checkpoint: str  # the file actually evaluated, with its iteration
    iterations: int  # fine-tuning iterations done
    comparison: Path
    metrics_json: Path
    means: dict  # method -> metric -> value


_u8 = to_uint8_hwc  # (C, H, W) float in [0, 1] -> (H, W, 3) uint8


def _grad_vis(img_u8: np.ndarray) -> np.ndarray:
    """M(I) of a uint8 image as a grey uint8 picture (mean over channels, x2 for contrast)."""
    x = torch.from_numpy(img_u8).permute(2, 0, 1).float().div(255)[None]
    m = gradient_map(x)[0].mean(0, keepdim=True)
    return _u8((m * 2).clamp(0, 1))


def _label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 8 + 7 * len(text), 16), fill=(0, 0, 0))
    d.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(im)


def comparison_grid(rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], gap: int = 4, label: str = "gradguide") -> np.ndarray:
    """``rows`` of ``(name, bicubic, sr, hr)`` uint8 HWC images of one size each ->
    one uint8 image: per row ``bicubic | <label> | HR`` over their gradient maps."""
    blocks = []
    for name, bic, sr, hr in rows:
        h, w, _ = hr.shape
        sep = np.full((h, gap, 3), 255, np.uint8)
        top = np.concatenate([_label(bic, f"bicubic  ({name})"), sep, _label(sr, label), sep, _label(hr, "HR")], axis=1)
        bottom = np.concatenate(
            [_label(_grad_vis(bic), "M(bicubic)"), sep, _label(_grad_vis(sr), f"M({label})"), sep, _label(_grad_vis(hr), "M(HR)")], axis=1
        )
        blocks += [top, np.full((gap, top.shape[1], 3), 255, np.uint8), bottom, np.full((3 * gap, top.shape[1], 3), 255, np.uint8)]
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks]
    return np.concatenate(blocks, axis=0)


def _centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]


def _iteration_of(path: Path) -> Optional[int]:
    from safetensors import safe_open

    import json

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    try:  # a model trained in pieces (bench/model_card.py records them): all its iterations
        pieces = json.loads(meta.get("training", "[]"))
        total = sum(int(p["iterations"]) for p in pieces)
        if total:
            return total
    except (ValueError, KeyError, TypeError):
        pass
    it = meta.get("iteration")
    return int(it) if it is not None and str(it).isdigit() else None


def _finetune(out: Path, pretrained: Path, overrides: Sequence[str], device: Optional[str], time_limit_s: float,
              min_iterations: int, console) -> tuple[int, str]:
    """The labelled fine-tuning segment; returns ``(iterations, why it stopped)``."""
    run_dir = out / "finetune"
    sets = [*FINETUNE, f"model.pretrained={pretrained}", f"train.iterations={DEMO_MAX_ITERATIONS}", f"train.time_limit_s={time_limit_s}"]
    if device:
        sets.append(f"train.device={device}")
    recipe = apply_overrides(resolve_recipe("default_x4"), [*sets, *overrides])
    resume = (run_dir / STATE_FILE).is_file()
    res = train(recipe, run_dir, resume=resume, console=console)
    why = res.stopped or "done"
    floor = min(min_iterations, recipe.train.iterations)
    if res.iteration < floor:  # a slow machine: do the floor anyway, without the time limit
        console.print(f"time limit reached at iteration {res.iteration}; continuing to the floor of {floor} iterations", highlight=False)
        recipe = apply_overrides(recipe, [f"train.iterations={floor}", "train.time_limit_s=0"])
        res = train(recipe, run_dir, resume=True, console=console)
        why = f"time limit ({time_limit_s:g} s), then the {floor}-iteration floor"
    return res.iteration, why


def run_demo(
    out: os.PathLike | str = "demo_out",
    *,
    overrides: Sequence[str] = (),
    device: Optional[str] = None,
    fresh: bool = False,
    time_limit_s: float = DEMO_TIME_LIMIT_S,
    min_iterations: int = DEMO_MIN_ITERATIONS,
    heldout_size: int = 256,
    console: Any = None,
) -> DemoResult:
    """Run the demo (see the module docstring). ``overrides`` are ``--set`` values for the
    fine-tuning segment's recipe (e.g. ``train.iterations=2`` for a smoke run)."""
    import shutil

    from rich.console import Console

    console = console or Console()
    out = Path(out)
    if fresh and (out / "finetune").exists():
        shutil.rmtree(out / "finetune")
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    scale = 4

    # held-out photos: never seen by the bundled model (SunHays80) nor by the fine-tuning (DEMO_TRAIN)
    held = out / "heldout"
    photos = [(n, _centre_crop(a, heldout_size)) for n, a in demo_images("eval")]
    val = ValidationDataset(photos, scale)
    for name, (_, hr) in zip(val.names, (val[i] for i in range(len(val)))):
        write_image(held / f"{name}.png", hr)

    bundled = bundled_model(DEFAULT_MODEL)
    bundled_it = _iteration_of(bundled.path)
    headline_ckpt = f"{bundled.path} (bundled '{bundled.name}', {bundled_it} training iterations; card: {bundled.card})"
    console.rule(f"[bold]1/3 the bundled model on held-out photos ({', '.join(val.names)})")
    console.print(f"model: {headline_ckpt}", highlight=False)

    # 2. the short fine-tuning segment (labelled; headlines only if it beats the bundled model)
    console.rule(f"[bold]2/3 fine-tuning segment: at most {time_limit_s:g} s (floor {min_iterations} iterations) on other bundled photos")
    iterations, why = _finetune(out, bundled.path, overrides, device, time_limit_s, min_iterations, console)
    ft_path = out / "finetune" / "G_latest.safetensors"
    console.print(f"fine-tuned: {ft_path} (iteration {iterations}; stopped: {why})", highlight=False)

    console.rule("[bold]3/3 evaluation and comparison picture")
    models = {"bicubic": "bicubic", HEADLINE_NAME: load(bundled.path), FINETUNED_NAME: load(ft_path)}
    report = evaluate(models, str(held), scale=scale, device=dev, console=console)
    print_report(report, console)
    metrics_json = write_json(report, out / "metrics.json")
    ds = report.datasets[0]
    means = {m: report.results[ds][m].mean for m in report.methods}
    ft, bd = means[FINETUNED_NAME], means[HEADLINE_NAME]
    beats = ft["PSNR"] is not None and ft["PSNR"] > bd["PSNR"] and ft["GMSD"] < bd["GMSD"]
    headline = FINETUNED_NAME if beats else HEADLINE_NAME
    if beats:
        headline_ckpt = f"{ft_path} (fine-tuned from the bundled model, iteration {iterations})"
    b = means["bicubic"]
    h = means[headline]
    console.print(
        f"headline: {headline} -- {headline_ckpt}\n"
        f"  PSNR-Y {h['PSNR']:.2f} dB vs bicubic {b['PSNR']:.2f} ({h['PSNR'] - b['PSNR']:+.2f}); "
        f"GMSD {h['GMSD']:.4f} vs {b['GMSD']:.4f}; gradient L1 {h['GradL1']:.4f} vs {b['GradL1']:.4f}; "
        f"CIEDE2000 {h['CIEDE2000']:.3f} vs {b['CIEDE2000']:.3f}",
        highlight=False, soft_wrap=True,
    )
    net = models[headline]
    rows = []
    for i, name in enumerate(val.names):
        lr, hr = val[i]
        sr = upscale_image(net, lr, scale=scale, tile=None, device=dev)["sr"]
        bic = _u8(imresize(lr.double(), float(scale)).float())
        rows.append((name, bic, sr, _u8(hr)))
    comparison = write_image(out / "comparison.png", comparison_grid(rows, label=headline))
    console.print(f"wrote {comparison} (bicubic | {headline} | HR, gradient maps below) and {metrics_json}", highlight=False)
    return DemoResult(out, headline, headline_ckpt, iterations, Path(comparison), Path(metrics_json), means)
