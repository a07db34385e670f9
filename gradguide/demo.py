"""``gradguide demo``: the main job on embedded data, offline.

1. trains the ``quickstart`` recipe on scikit-image's bundled photos
   (:func:`gradguide.data.datasets.demo_images`, ``"train"`` split) for at most
   ``train.time_limit_s`` seconds (default 300; resumable: running the demo again
   continues the run in ``OUT/train``);
2. writes the held-out photos (``"eval"`` split, never trained on) to ``OUT/heldout``;
3. evaluates bicubic and the trained model there with :func:`gradguide.evaluate`
   (Y-channel PSNR/SSIM, GMSD, gradient L1; border crop = scale) and prints the table
   (also ``OUT/metrics.json``);
4. upscales the held-out images with :func:`gradguide.infer.upscale.upscale_image` and
   writes ``OUT/comparison.png``: per image, ``bicubic | gradguide | HR`` and below it
   their gradient maps ``M(.)`` (Eq. 2).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

__all__ = ["run_demo", "DemoResult", "DEMO_TIME_LIMIT_S"]

#: the training part's wall-clock budget (the whole demo is ~10 min on 2 cores incl. install)
DEMO_TIME_LIMIT_S = 300


@dataclass
class DemoResult:
    out_dir: Path
    iterations: int
    comparison: Path
    metrics_json: Path
    means: dict  # method -> metric -> value


def _u8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return torch.floor(x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def _grad_vis(img_u8: np.ndarray) -> np.ndarray:
    """M(I) of a uint8 image as a grey uint8 picture (mean over channels, x2 for contrast)."""
    from .ops import gradient_map

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


def comparison_grid(rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], gap: int = 4) -> np.ndarray:
    """``rows`` of ``(name, bicubic, sr, hr)`` uint8 HWC images of one size each ->
    one uint8 image: per row ``bicubic | gradguide | HR`` over their gradient maps."""
    blocks = []
    for name, bic, sr, hr in rows:
        h, w, _ = hr.shape
        sep = np.full((h, gap, 3), 255, np.uint8)
        top = np.concatenate([_label(bic, f"bicubic  ({name})"), sep, _label(sr, "gradguide"), sep, _label(hr, "HR")], axis=1)
        bottom = np.concatenate(
            [_label(_grad_vis(bic), "M(bicubic)"), sep, _label(_grad_vis(sr), "M(gradguide)"), sep, _label(_grad_vis(hr), "M(HR)")], axis=1
        )
        blocks += [top, np.full((gap, top.shape[1], 3), 255, np.uint8), bottom, np.full((3 * gap, top.shape[1], 3), 255, np.uint8)]
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks]
    return np.concatenate(blocks, axis=0)


def run_demo(
    out: os.PathLike | str = "demo_out",
    *,
    overrides: Sequence[str] = (),
    device: Optional[str] = None,
    fresh: bool = False,
    console: Any = None,
) -> DemoResult:
    """Run the demo (see the module docstring). ``overrides`` are ``--set`` values for
    the quickstart recipe (e.g. ``train.iterations=20`` for a smoke run)."""
    import shutil

    from rich.console import Console

    from .checkpoints import load
    from .data.datasets import ValidationDataset, demo_images
    from .data.imresize import imresize
    from .eval.evaluate import evaluate
    from .eval.report import print_report, write_json
    from .imageio import write_image
    from .infer.upscale import upscale_image
    from .train.recipe import apply_overrides, resolve_recipe
    from .train.state import load_state_file
    from .train.trainer import STATE_FILE, train

    console = console or Console()
    out = Path(out)
    run_dir = out / "train"
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    sets = ["data.source=skimage", f"train.time_limit_s={DEMO_TIME_LIMIT_S}"]
    if device:
        sets.append(f"train.device={device}")
    recipe = apply_overrides(resolve_recipe("quickstart"), [*sets, *overrides])
    scale = recipe.model.scale

    # 1. train (or continue an earlier demo run)
    resume = (run_dir / STATE_FILE).is_file()
    done = resume and load_state_file(run_dir / STATE_FILE)["iteration"] >= recipe.train.iterations
    console.rule("[bold]1/3 training the quickstart recipe on scikit-image's bundled photos")
    if done:
        console.print(f"{run_dir} already holds a finished run; --fresh retrains")
        iterations = recipe.train.iterations
    else:
        result = train(recipe, run_dir, resume=resume, console=console)
        iterations = result.iteration
        why = f" (stopped: {result.stopped}; run the demo again to continue)" if result.stopped else ""
        console.print(f"trained to iteration {iterations} in {result.seconds:.0f} s{why}", highlight=False)
    best = run_dir / "G_best.safetensors"
    ckpt = best if best.is_file() else run_dir / "G_latest.safetensors"
    model = load(ckpt)
    console.print(f"model: {ckpt} ({iterations} iterations)", highlight=False)

    # 2. held-out photos (never trained on), HR cropped to a multiple of the scale
    console.rule("[bold]2/3 evaluating on held-out photos")
    held = out / "heldout"
    val = ValidationDataset(demo_images("eval"), scale)
    for name, (_, hr) in zip(val.names, (val[i] for i in range(len(val)))):
        write_image(held / f"{name}.png", hr)
    report = evaluate(
        {"bicubic": "bicubic", "gradguide": model}, str(held), scale=scale, console=console
    )  # every metric: those that need missing weights (LPIPS) or models (PI) are noted, not guessed
    print_report(report, console)
    metrics_json = write_json(report, out / "metrics.json")

    # 3. comparison picture
    console.rule("[bold]3/3 comparison picture")
    dev = recipe.train.device if recipe.train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for i, name in enumerate(val.names):
        lr, hr = val[i]
        sr = upscale_image(model, lr, scale=scale, tile=None, device=dev)["sr"]
        bic = _u8(imresize(lr.double(), float(scale)).float())
        rows.append((name, bic, sr, _u8(hr)))
    comparison = write_image(out / "comparison.png", comparison_grid(rows))
    console.print(f"wrote {comparison} (bicubic | gradguide | HR, gradient maps below) and {metrics_json}", highlight=False)
    ds = report.datasets[0]
    means = {m: report.results[ds][m].mean for m in report.methods}
    return DemoResult(out, iterations, Path(comparison), Path(metrics_json), means)
