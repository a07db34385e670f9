"""The batched, cached evaluation equals the per-pair implementation it replaced
(gradguide.eval._reference): PSNR within 1e-6 dB, SSIM/GMSD/GradL1/NIQE within 1e-6."""
import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gradguide.data.imresize import imresize
from gradguide.eval import _reference as R
from gradguide.eval.evaluate import bicubic_lr, evaluate
from gradguide.eval.features import NR_METRICS, PAIR_METRICS, ImageFeatures, filter_valid, gaussian_1d

niqe_mod = importlib.import_module("gradguide.eval.niqe")
pytestmark = pytest.mark.usefixtures("one_thread")

TOL = {"PSNR": 1e-6, "SSIM": 1e-6, "GMSD": 1e-6, "GradL1": 1e-6, "NIQE": 1e-6}


def _photo(shared_dir, size=(200, 296)):
    """A real photo (flat sky, edges) resized to ``size``: flat regions are where NIQE is fragile."""
    a = np.asarray(Image.open(f"{shared_dir}/data/test/Set5/bird.png").convert("RGB"))
    return imresize(a, size=size)


def _pairs(shared_dir):
    hr = _photo(shared_dir)
    lr = imresize(hr, 0.25)
    bic = imresize(lr, 4.0)
    g = np.random.default_rng(0)
    noisy = np.clip(hr.astype(np.int16) + g.integers(-9, 10, hr.shape), 0, 255).astype(np.uint8)
    flat = np.full_like(hr, 128)
    flat[:, 150:] = 30  # one edge in a flat image (NIQE is NaN: no textured block)
    return hr, {"bicubic": bic, "noisy": noisy, "flat": flat}


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_pair_metrics_equal_reference(shared_dir):
    hr, srs = _pairs(shared_dir)
    hf = ImageFeatures.from_uint8(hr, 4)
    batch = ImageFeatures(torch.cat([_t(s) for s in srs.values()]).double(), 4)
    got = {m: PAIR_METRICS[m](batch, hf).tolist() for m in ("PSNR", "SSIM", "GMSD", "GradL1")}
    got["NIQE"] = NR_METRICS["NIQE"](batch).tolist()
    ref_fns = {"PSNR": R.psnr_y, "SSIM": R.ssim_y, "GMSD": R.gmsd, "GradL1": R.gradient_l1}
    for i, (name, sr) in enumerate(srs.items()):
        for m, fn in ref_fns.items():
            ref = fn(_t(sr), _t(hr), crop=4).item()
            assert abs(got[m][i] - ref) <= TOL[m], (name, m, got[m][i], ref)
        ref_niqe = R.niqe(_t(sr), crop=4).item()
        if name == "flat":  # blocks with no texture: undefined features, NaN in both
            assert np.isnan(ref_niqe) and np.isnan(got["NIQE"][i])
            continue
        assert np.isfinite(ref_niqe)
        assert abs(got["NIQE"][i] - ref_niqe) <= TOL["NIQE"], (name, got["NIQE"][i], ref_niqe)
    # one batch of three equals three batches of one
    for i, sr in enumerate(srs.values()):
        one = ImageFeatures.from_uint8(sr, 4)
        assert PAIR_METRICS["SSIM"](one, hf).item() == got["SSIM"][i]


def test_public_functions_unchanged(shared_dir):
    from gradguide.eval import metrics as M

    hr, srs = _pairs(shared_dir)
    for sr in srs.values():
        a, b = _t(sr).float() / 255, _t(hr).float() / 255
        for fn, ref in ((M.psnr_y, R.psnr_y), (M.ssim_y, R.ssim_y), (M.gmsd, R.gmsd), (M.gradient_l1, R.gradient_l1)):
            for q in (True, False):
                assert fn(a, b, crop=3, quantize=q).item() == pytest.approx(ref(a, b, crop=3, quantize=q).item(), abs=1e-6)


def test_separable_filter_equals_2d_window():
    g = gaussian_1d(11, 1.5)
    x = torch.rand(2, 1, 40, 37, dtype=torch.float64) * 255
    full = F.conv2d(x, (g[:, None] * g[None, :])[None, None])
    assert filter_valid(x, g).shape == full.shape == (2, 1, 30, 27)
    assert torch.allclose(filter_valid(x, g), full, rtol=0, atol=1e-10)


def test_niqe_table_search_equals_full_argmin():
    gam, r = niqe_mod._gamma_table()
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.random(2000) * 0.8, r[[0, 5, 9800]], [r[0] - 1, r[-1] + 1, (r[10] + r[11]) / 2]])
    full = np.argmin((r[None, :] - x[:, None]) ** 2, axis=1)
    assert np.array_equal(niqe_mod._nearest(r, x), full)
    # non-finite: the full search sees only inf/nan differences and returns the first index
    assert niqe_mod._nearest(r, np.array([np.inf, -np.inf, np.nan])).tolist() == [0, 0, 0]


class _Tiny(torch.nn.Module):
    scale = 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 48, 3, padding=1)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 4) * 0.2 + F.interpolate(x, scale_factor=4, mode="bicubic").clamp(0, 1)


def test_evaluate_equals_reference_loop(shared_dir, tmp_path):
    ds = tmp_path / "Folder"
    ds.mkdir()
    hr = _photo(shared_dir, size=(203, 298))  # not a multiple of 4: the crop to the scale
    Image.fromarray(hr).save(ds / "a.png")
    Image.fromarray(np.ascontiguousarray(hr[::-1, :, ::-1])).save(ds / "b.png")
    metrics = ["PSNR", "SSIM", "GMSD", "GradL1", "NIQE"]
    net = _Tiny().eval()
    rep = evaluate({"Bicubic": "bicubic", "Tiny": net}, [ds], scale=4, metrics=metrics, lr_cache=tmp_path / "cache")
    files = sorted(ds.iterdir())
    for name, model in (("Bicubic", None), ("Tiny", net)):
        ref = R.evaluate_images(files, 4, metrics, net=model)
        got = rep.results["Folder"][name].images
        assert len(got) == len(ref) == 2
        for g, r in zip(got, ref):
            for m in metrics:
                assert abs(g.metrics[m] - r[m]) <= TOL[m], (name, g.name, m, g.metrics[m], r[m])


def test_lr_cache_is_written_reused_and_keyed(tmp_path):
    f = tmp_path / "ds" / "im.png"
    f.parent.mkdir()
    rng = np.random.default_rng(0)
    hr = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(hr).save(f)
    cache = tmp_path / "cache"
    lr = bicubic_lr(f, hr, 4, cache)
    assert np.array_equal(lr, imresize(hr, 0.25))
    (entry,) = list(cache.rglob("*.npy"))
    assert entry.parent.name == "x4" and entry.parent.parent.name.startswith("ds-")
    # a cached entry is what is read back (poison it to prove it is not recomputed)
    np.save(entry, np.zeros_like(lr))
    assert not bicubic_lr(f, hr, 4, cache).any()
    # a wrong-shaped entry is remade; another scale is another entry
    np.save(entry, np.zeros((2, 2, 3), np.uint8))
    assert np.array_equal(bicubic_lr(f, hr, 4, cache), lr)
    bicubic_lr(f, hr[:32, :40], 2, cache)
    assert len(list(cache.rglob("*.npy"))) == 2


def test_reference_ssim_without_kornia_equals_kornia():
    kornia_metrics = pytest.importorskip("kornia.metrics")
    g = torch.Generator().manual_seed(3)
    a = torch.rand(2, 1, 40, 50, generator=g, dtype=torch.float64) * 255
    b = (a + 9 * torch.randn(2, 1, 40, 50, generator=g, dtype=torch.float64)).clamp(0, 255)
    ref = kornia_metrics.ssim(a, b, 11, max_val=255.0, padding="valid")
    assert torch.allclose(R._ssim_map_2d(a, b), ref, rtol=0, atol=1e-12)


def test_cli_lr_cache_fills_and_reuses(tmp_path, shared_dir):
    from gradguide.cli import main

    ds = tmp_path / "Folder"
    ds.mkdir()
    Image.fromarray(_photo(shared_dir, size=(48, 64))).save(ds / "a.png")
    cache = tmp_path / "lrcache"
    args = ["eval", "bicubic", "--data", str(ds), "--metrics", "PSNR,SSIM", "--lr-cache", str(cache), "--json"]
    assert main(args + [str(tmp_path / "r1.json")]) == 0
    (entry,) = list(cache.rglob("*.npy"))
    assert main(args + [str(tmp_path / "r2.json")]) == 0
    import json

    r1, r2 = (json.loads((tmp_path / f).read_text()) for f in ("r1.json", "r2.json"))
    assert r1["datasets"]["Folder"]["Bicubic"]["mean"] == r2["datasets"]["Folder"]["Bicubic"]["mean"]
    assert list(cache.rglob("*.npy")) == [entry]


def test_bicubic_upscale_is_imresize_bit_for_bit():
    from gradguide.eval.features import bicubic_upscale

    rng = np.random.default_rng(4)
    for h, w, s in [(48, 64, 4), (37, 53, 4), (50, 41, 2), (9, 7, 4), (20, 30, 3), (17, 19, 8)]:
        a = (rng.random((h, w, 3)) * 256).astype(np.uint8)
        a[:3] = 255  # saturated rows: the clipping after each pass
        a[-2:] = 0
        assert np.array_equal(bicubic_upscale(a, s), imresize(a, float(s))), (h, w, s)
