"""Tiled streaming upscaling: tiled == untiled, OOM shrink, mixed batches, grey/RGBA/16-bit, CLI."""
import numpy as np
import pytest
import torch
from PIL import Image

import gradguide
from gradguide.imageio import read_image
from gradguide.infer.tiling import edge_window, run_tiles, tile_starts, tiled_forward
from gradguide.infer.upscale import upscale


class TinySR(torch.nn.Module):
    """Two 3x3 convs + PixelShuffle (receptive field 5x5), returns SROutput."""

    def __init__(self, scale=2):
        super().__init__()
        self.scale = scale
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1)
        self.up = torch.nn.PixelShuffle(scale)

    def forward(self, x):
        sr = torch.sigmoid(self.up(self.c2(torch.relu(self.c1(x)))))
        return gradguide.SROutput(sr, gradguide.gradient_map(sr), None)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinySR(2).eval()


def test_tile_grid_and_windows_partition_of_unity():
    assert tile_starts(10, 16, 4) == [0]
    assert tile_starts(40, 16, 8) == [0, 8, 16, 24]
    assert tile_starts(41, 16, 8) == [0, 8, 16, 24, 25]
    # two regular neighbours: windows sum to exactly 1 in their overlap
    a = edge_window(32, cut_lo=False, cut_hi=True, pad=4, blend=8, dtype=torch.float64)
    b = edge_window(32, cut_lo=True, cut_hi=False, pad=4, blend=8, dtype=torch.float64)
    total = torch.zeros(48, dtype=torch.float64)
    total[:32] += a
    total[16:] += b
    assert torch.allclose(total, torch.ones(48, dtype=torch.float64))
    assert a[-4:].eq(0).all() and b[:4].eq(0).all()


def test_tiled_equals_untiled_tiny(tiny):
    x = torch.rand(1, 3, 30, 37)
    with torch.no_grad():
        ref = tiny(x)
    sr, grad = tiled_forward(tiny, x, tile=16, overlap=12, with_grad=True)
    assert sr.shape == ref.sr.shape
    assert (sr - ref.sr).abs().max() < 1e-5 and (grad - ref.grad).abs().max() < 1e-5


def test_tiled_equals_untiled_spsr():
    torch.manual_seed(0)
    m = gradguide.create_spsr(nf=8, nb=2, gc=8, scale=4).eval()
    x = torch.rand(1, 3, 24, 28)
    with torch.no_grad():
        ref = m(x)
    bands = []
    sr, grad = tiled_forward(m, x, tile=20, overlap=16, with_grad=True)
    assert (sr - ref.sr).abs().max().item() < 1e-4
    assert (grad - ref.grad).abs().max().item() < 1e-4


def test_bands_stream_top_to_bottom(tiny):
    x = torch.rand(1, 3, 40, 20)
    seen = []
    run_tiles(tiny, x, lambda y0, y1, sr, g: seen.append((y0, y1, sr.shape[-2])), scale=2, tile=16, overlap=8)
    assert seen[0][0] == 0 and seen[-1][1] == 80
    assert all(a[1] == b[0] for a, b in zip(seen, seen[1:]))
    assert all(y1 - y0 == n for y0, y1, n in seen) and len(seen) > 1


class OOMOver(torch.nn.Module):
    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit, self.scale = inner, limit, inner.scale

    def forward(self, x):
        if x.shape[-1] > self.limit or x.shape[-2] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_tile_shrinks_on_oom(tiny):
    x = torch.rand(1, 3, 40, 40)
    retries = []
    out = {}

    def sink(y0, y1, sr, g):
        out.setdefault("sr", torch.zeros(1, 3, 80, 80))[..., y0:y1, :] = sr

    used = run_tiles(OOMOver(tiny, 20), x, sink, scale=2, tile=64, overlap=8, min_tile=8, on_retry=lambda t, e: retries.append(t))
    assert used == 16 and retries == [32, 16]
    with torch.no_grad():
        assert (out["sr"] - tiny(x).sr).abs().max() < 1e-5
    from gradguide.infer.tiling import TileOOMError

    with pytest.raises(TileOOMError, match="out of memory"):
        run_tiles(OOMOver(tiny, 4), x, sink, scale=2, tile=32, overlap=8, min_tile=8)


def test_precision_and_device_errors(tiny):
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref = tiny(x).sr
    sr, _ = tiled_forward(tiny, x, tile=None, precision="bf16")
    assert (sr - ref).abs().max() < 0.05
    tiny.float()
    from gradguide.infer.tiling import InferenceError

    with pytest.raises(InferenceError, match="precision"):
        tiled_forward(tiny, x, precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(InferenceError, match="CUDA"):
            tiled_forward(tiny, x, device="cuda")


def _write_inputs(d):
    rng = np.random.default_rng(0)
    d.mkdir()
    Image.fromarray((rng.random((12, 14, 3)) * 255).astype(np.uint8)).save(d / "a_rgb.png")
    Image.fromarray((rng.random((12, 14)) * 255).astype(np.uint8), mode="L").save(d / "b_grey.png")
    rgba = (rng.random((12, 14, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(d / "c_rgba.png")
    gradguide.imageio.write_image(d / "d_16.png", torch.rand(3, 12, 14), bit_depth=16)
    ok = (d / "a_rgb.png").read_bytes()
    (d / "e_trunc.png").write_bytes(ok[: len(ok) // 2])
    (d / "f_text.png").write_text("not an image")
    return rgba


def test_mixed_batch_grey_rgba_16bit_and_corrupt(tiny, tmp_path):
    import gradguide.imageio  # noqa: F401

    rgba = _write_inputs(tmp_path / "in")
    res = upscale(tiny, [str(tmp_path / "in")], tmp_path / "out", tile=10, overlap=8, save_grad=True, compare=True, progress=False)
    by = {r.input.name: r for r in res}
    assert len(res) == 6
    assert not by["e_trunc.png"].ok and "e_trunc.png" in by["e_trunc.png"].error
    assert not by["f_text.png"].ok and "f_text.png" in by["f_text.png"].error
    assert all(by[n].ok for n in ("a_rgb.png", "b_grey.png", "c_rgba.png", "d_16.png"))
    assert Image.open(by["a_rgb.png"].output).size == (28, 24)
    assert Image.open(by["b_grey.png"].output).mode == "L"
    c = Image.open(by["c_rgba.png"].output)
    assert c.mode == "RGBA"
    from gradguide.data.imresize import imresize

    want = imresize(rgba[..., 3], 2.0)
    assert np.array_equal(np.asarray(c)[..., 3], want)
    d16 = read_image(by["d_16.png"].output)
    assert d16.bit_depth == 16 and not d16.is_grey
    assert Image.open(by["a_rgb.png"].compare).size == (56, 24)
    assert by["a_rgb.png"].grad.exists()
    # the untiled tensor result equals what was written (rounded to uint8)
    with torch.no_grad():
        ref = tiny(read_image(tmp_path / "in" / "a_rgb.png").rgb[None]).sr[0]
    got = read_image(by["a_rgb.png"].output).rgb
    assert (got - ref).abs().max() <= 0.5 / 255 + 1e-4


def test_bomb_refused_and_batch_continues(tiny, tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "in" / "big.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "small.png")
    res = upscale(tiny, [str(tmp_path / "in" / "*.png")], tmp_path / "out", max_pixels=1000, progress=False)
    assert [r.ok for r in res] == [False, True]
    assert "exceeds the limit" in res[0].error


def test_upscale_cli(tmp_path, capsys):
    from gradguide.cli import main

    torch.manual_seed(0)
    ck = gradguide.save(gradguide.create_spsr(nf=8, nb=1, gc=8, scale=2), tmp_path / "m.safetensors")
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(tmp_path / "in" / "x.png")
    (tmp_path / "in" / "y.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rc = main(["upscale", str(ck), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--save-grad", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "y.png" in err and "1 written" in err
    assert Image.open(tmp_path / "out" / "x.png").size == (24, 20)
    assert (tmp_path / "out" / "x_grad.png").exists()
    assert main(["upscale", str(tmp_path / "missing.pth"), str(tmp_path / "in"), "-o", str(tmp_path / "o2")]) == 2


def test_missing_path_and_empty_glob_in_a_batch_are_skipped(tiny, tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "ok.png")
    inputs = [str(tmp_path / "gone.png"), str(tmp_path / "in" / "ok.png"), str(tmp_path / "none" / "*.png")]
    res = upscale(tiny, inputs, tmp_path / "out", progress=False)
    by = {r.input.name: r for r in res}
    assert by["ok.png"].ok and by["ok.png"].output.exists()
    assert "gone.png" in by["gone.png"].error and "no such file" in by["gone.png"].error
    assert "matched no image" in by["*.png"].error
    with pytest.raises(gradguide.errors.ImageReadError, match="gone.png"):
        upscale(tiny, [str(tmp_path / "gone.png")], tmp_path / "out2", progress=False)
