"""The demo job end to end with a tiny model and 2 iterations (bundled photos only)."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image
from rich.console import Console

from gradguide.demo import run_demo
from gradguide.train.state import load_state_file

TINY = [
    "train.iterations=2", "train.batch_size=2", "data.crop=32", "val.every=0", "log.tensorboard=false",
    "model.backbone_config.nf=4", "model.backbone_config.nb=1", "model.backbone_config.gc=4",
]  # fmt: skip


def test_demo_trains_evaluates_and_draws(tmp_path):
    out = tmp_path / "demo"
    console = Console(record=True, width=120)
    res = run_demo(out, overrides=TINY, device="cpu", console=console)
    assert res.iterations == 2 and load_state_file(out / "train" / "state.pt")["iteration"] == 2
    # held-out photos were written and evaluated for both methods
    held = sorted(p.name for p in (out / "heldout").iterdir())
    assert held and all(n.endswith(".png") for n in held)
    data = json.loads(res.metrics_json.read_text())
    (ds,) = data["datasets"].values()
    assert set(ds) == {"bicubic", "gradguide"}
    for m in ("bicubic", "gradguide"):
        assert np.isfinite(ds[m]["mean"]["PSNR"]) and len(ds[m]["images"]) == len(held)
    assert res.means["bicubic"]["PSNR"] > 20  # bicubic on natural photos, a sanity anchor
    text = console.export_text()
    assert "PSNR" in text and "gradguide" in text
    # comparison: per image a row of 3 panels and a row of 3 gradient maps
    img = np.asarray(Image.open(res.comparison))
    widths = [Image.open(out / "heldout" / n).size[0] for n in held]
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[1] == 3 * max(widths) + 2 * 4
    heights = sum(Image.open(out / "heldout" / n).size[1] for n in held)
    assert img.shape[0] == 2 * heights + len(held) * (4 + 12)
    # running it again continues (here: finds the finished run) instead of retraining
    console2 = Console(record=True, width=120)
    again = run_demo(out, overrides=TINY, device="cpu", console=console2)
    assert again.iterations == 2 and "already holds a finished run" in console2.export_text()
