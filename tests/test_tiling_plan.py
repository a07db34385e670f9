"""tile='auto': tile size from a memory budget, untiled when it fits, balanced grids."""
import pytest
import torch
import torch.nn.functional as F

from gradguide.infer.tiling import (
    InferenceError,
    activation_bytes,
    balanced_tile,
    parse_memory,
    plan_tile,
    run_tiles,
    tile_starts,
    tiled_forward,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(torch.nn.Module):
    """Two convs (context 2 LR px) and a pixel shuffle: x2."""

    scale = 2

    def __init__(self, width=8):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, width, 3, padding=1)
        self.b = torch.nn.Conv2d(width, 12, 3, padding=1)

    def forward(self, x):
        return F.pixel_shuffle(self.b(torch.relu(self.a(x))), 2)


def test_parse_memory():
    assert parse_memory("3G") == 3 * 2**30
    assert parse_memory("2.5GiB") == int(2.5 * 2**30)
    assert parse_memory("512M") == 512 * 2**20
    assert parse_memory(1000) == 1000
    assert parse_memory(None) is None and parse_memory("") is None
    with pytest.raises(InferenceError, match="max-memory"):
        parse_memory("lots")


def test_balanced_tile_keeps_count_and_shrinks():
    for length, tile, ov in [(512, 128, 32), (500, 200, 16), (97, 40, 8), (1000, 333, 0)]:
        t = balanced_tile(length, tile, ov)
        assert t <= tile
        assert len(tile_starts(length, t, ov)) == len(tile_starts(length, tile, ov))
    assert balanced_tile(512, 128, 32) == 128  # 5 tiles of 128 already tile 512 exactly
    assert balanced_tile(512, 264, 8) == 260
    assert balanced_tile(50, 64, 8) == 50


def test_activation_trace_scales_with_area():
    m = Tiny(width=8)
    a = activation_bytes(m, side=16)
    b = activation_bytes(m, side=32)
    assert a > 0 and b == pytest.approx(4 * a, rel=0.05)
    # at least the largest intermediate: the (1, 8, 32, 32) float32 hidden map
    assert b >= 8 * 32 * 32 * 4


def test_plan_untiled_when_it_fits_and_tiles_under_a_small_budget(monkeypatch):
    import gradguide.infer.tiling as tiling

    monkeypatch.setattr(tiling, "_rss", lambda: 10**9)  # the process as it is now: held constant
    m = Tiny(width=8)
    big = plan_tile(m, (1, 3, 64, 64), scale=2, overlap=8, max_memory="64G")
    assert big.tile is None and big.estimated_peak <= big.budget
    # a budget just above the fixed part of a large image: a tile, whose estimate fits
    fixed = plan_tile(m, (1, 3, 400, 400), scale=2, overlap=8, max_memory="64G").fixed
    small = plan_tile(m, (1, 3, 400, 400), scale=2, overlap=8, max_memory=fixed + 4 * 2**20)
    assert small.tile is not None and 9 <= small.tile < 400
    assert small.estimated_peak <= small.budget
    bigger = plan_tile(m, (1, 3, 400, 400), scale=2, overlap=8, max_memory=fixed + 16 * 2**20)
    assert bigger.tile > small.tile and bigger.estimated_peak <= bigger.budget
    # the largest such tile: one more pixel would not fit
    assert plan_tile(m, (1, 3, 400, 400), scale=2, overlap=8, max_memory=small.estimated_peak - 1).tile < small.tile


def test_auto_runs_untiled_and_equals_untiled():
    m = Tiny().eval()
    x = torch.rand(1, 3, 40, 36)
    ref, _ = tiled_forward(m, x, tile=None)
    seen = []
    used = run_tiles(m, x, lambda y0, y1, sr, g: seen.append((y0, y1)), scale=2, tile="auto", max_memory="8G")
    assert used == 40 and seen == [(0, 80)]  # one band: untiled
    out, _ = tiled_forward(m, x, tile="auto", max_memory="8G")
    assert torch.equal(out, ref)


def test_balanced_grid_within_one_level_of_untiled():
    m = Tiny().eval()
    x = torch.rand(1, 3, 50, 47)
    ref, _ = tiled_forward(m, x, tile=None)
    for balance in (True, False):
        out, _ = tiled_forward(m, x, tile=24, overlap=8, balance=balance)
        q = lambda t: torch.floor(t.clamp(0, 1) * 255 + 0.5)  # noqa: E731
        assert (q(out) - q(ref)).abs().max() <= 1
        assert (out - ref).abs().max() < 1e-4  # context 2 px < pad (8 // 4): exact to rounding


def test_bad_tile_string():
    with pytest.raises(InferenceError, match="auto"):
        run_tiles(Tiny(), torch.rand(1, 3, 8, 8), lambda *a: None, scale=2, tile="big")


def test_cli_tile_auto_and_max_memory(tmp_path):
    import argparse

    from gradguide.commands.inference import _tile_arg

    assert _tile_arg("auto") == "auto" and _tile_arg("0") == 0 and _tile_arg("96") == 96
    with pytest.raises(argparse.ArgumentTypeError):
        _tile_arg("huge")


def test_cli_upscale_max_memory(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from gradguide.cli import main

    Image.fromarray((np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(out), "--max-memory", "1G", "--no-progress"]) == 0
    assert Image.open(out / "a.png").size == (40, 48)  # the bundled x4 model, untiled under 1G
    rc = main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o2"), "--max-memory", "lots", "--no-progress"])
    assert rc != 0
    assert "--max-memory" in capsys.readouterr().err
