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


def test_cpu_tiles_are_capped_for_speed(monkeypatch):
    """On the CPU, tile='auto' stays at or below CPU_TILE even when the whole image fits
    (time per pixel rises above it); max_tile=0 lifts the bound, other devices have none."""
    import gradguide.infer.tiling as tiling

    monkeypatch.setattr(tiling, "_rss", lambda: 10**9)
    m = Tiny(width=8)
    side = tiling.CPU_TILE + 100
    capped = plan_tile(m, (1, 3, side, side), scale=2, overlap=8, max_memory="64G")
    assert capped.tile == tiling.CPU_TILE
    assert plan_tile(m, (1, 3, side, side), scale=2, overlap=8, max_memory="64G", max_tile=0).tile is None
    assert plan_tile(m, (1, 3, side, side), scale=2, overlap=8, max_memory="64G", max_tile=100).tile == 100
    assert plan_tile(m, (1, 3, tiling.CPU_TILE, 40), scale=2, overlap=8, max_memory="64G").tile is None
    # a memory-bound tile below the cap is kept as it is
    fixed = capped.fixed
    assert plan_tile(m, (1, 3, side, side), scale=2, overlap=8, max_memory=fixed + 4 * 2**20).tile < tiling.CPU_TILE


class Recorder(Tiny):
    """Tiny that records the memory format of every input; ``strict`` refuses NHWC as a
    model with a ``.view`` on NCHW strides would."""

    def __init__(self, strict=False):
        super().__init__()
        self.strict, self.formats = strict, []

    def forward(self, x):
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        self.formats.append("nhwc" if nhwc else "nchw")
        if self.strict and nhwc:
            raise RuntimeError("view size is not compatible with input tensor's size and stride")
        return super().forward(x)


def test_cpu_tiles_go_channels_last_with_the_same_output():
    x = torch.rand(1, 3, 50, 47)
    m = Recorder().eval()
    nchw, _ = tiled_forward(m, x, tile=24, overlap=8, channels_last=False)
    assert set(m.formats) == {"nchw"}
    m.formats.clear()
    auto, _ = tiled_forward(m, x, tile=24, overlap=8)  # CPU: channels_last by default
    assert set(m.formats) == {"nhwc"} and len(m.formats) == 9
    assert (auto - nchw).abs().max() < 1e-5
    # the model's own parameters are left as they were
    assert all(p.is_contiguous() for p in m.parameters())


def test_a_model_that_refuses_channels_last_runs_nchw():
    x = torch.rand(1, 3, 50, 47)
    ref, _ = tiled_forward(Tiny().eval(), x, tile=24, overlap=8, channels_last=False)
    m = Recorder(strict=True).eval()
    out, _ = tiled_forward(m, x, tile=24, overlap=8)
    assert m.formats[:2] == ["nhwc", "nchw"] and set(m.formats[2:]) == {"nchw"}  # one retry, then NCHW
    assert torch.equal(out, ref)


def test_an_error_on_nchw_too_propagates():
    class Broken(Tiny):
        def forward(self, x):
            raise RuntimeError("broken weights")

    with pytest.raises(RuntimeError, match="broken weights"):
        tiled_forward(Broken().eval(), torch.rand(1, 3, 20, 20), tile=None)
