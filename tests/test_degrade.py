"""gradguide.data.degrade: each operator against a reference formula, then the pipeline."""
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradguide.data import degrade as D

pytestmark = pytest.mark.usefixtures("one_thread")


def _np_kernel(k, sx, sy, theta, beta=1.0, shape="gaussian"):
    """Independent numpy reference: q = v^T Sigma^-1 v at every grid point."""
    ax = np.arange(-(k // 2), k // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)  # xx varies along columns
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sx * sx, sy * sy]) @ rot.T
    v = np.stack([xx, yy], -1)
    q = np.einsum("...i,ij,...j->...", v, np.linalg.inv(cov), v)
    out = {"gaussian": np.exp(-0.5 * q), "generalized": np.exp(-0.5 * q**beta), "plateau": 1 / (q**beta + 1)}[shape]
    return out / out.sum()


def _t(*v):
    return torch.tensor(v, dtype=torch.float64)


# ---------------------------------------------------------------- kernels


def test_isotropic_gaussian_is_outer_product_of_1d_gaussians():
    ax = torch.arange(-10, 11, dtype=torch.float64)
    g = torch.exp(-(ax**2) / (2 * 1.7**2))
    ref = torch.outer(g, g) / torch.outer(g, g).sum()
    k = D.anisotropic_kernels(21, _t(1.7), _t(1.7), _t(0.0))[0]
    assert torch.allclose(k, ref, atol=1e-12)


def test_anisotropic_axes_and_rotation():
    ax = torch.arange(-7, 8, dtype=torch.float64)
    gx, gy = torch.exp(-(ax**2) / (2 * 3.0**2)), torch.exp(-(ax**2) / (2 * 0.8**2))
    ref = torch.outer(gy, gx)  # rows vary with y (sigma_y), columns with x (sigma_x)
    k = D.anisotropic_kernels(15, _t(3.0, 3.0), _t(0.8, 0.8), _t(0.0, math.pi / 2))
    assert torch.allclose(k[0], ref / ref.sum(), atol=1e-12)
    assert torch.allclose(k[1], k[0].T, atol=1e-12)  # a quarter turn swaps the axes


@pytest.mark.parametrize("shape,beta", [("gaussian", 1.0), ("generalized", 0.6), ("generalized", 3.5), ("plateau", 1.4)])
def test_kernels_match_numpy_formula(shape, beta):
    k = D.anisotropic_kernels(21, _t(2.5), _t(0.9), _t(0.7), _t(beta), shape=shape)[0]
    assert np.allclose(k.numpy(), _np_kernel(21, 2.5, 0.9, 0.7, beta, shape), atol=1e-12)
    assert torch.isclose(k.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_generalized_with_beta_one_is_gaussian():
    a = D.anisotropic_kernels(11, _t(1.2), _t(2.0), _t(0.3), _t(1.0), shape="generalized")
    b = D.anisotropic_kernels(11, _t(1.2), _t(2.0), _t(0.3))
    assert torch.allclose(a, b, atol=1e-14)


def test_sinc_matches_bessel_reference():
    from scipy.special import j1

    k, w = 13, 1.3
    c = (k - 1) / 2
    y, x = np.mgrid[0:k, 0:k]
    r = np.hypot(x - c, y - c)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = w * j1(w * r) / (2 * np.pi * r)
    ref[int(c), int(c)] = w**2 / (4 * np.pi)
    ref /= ref.sum()
    assert np.allclose(D.sinc_kernels(k, _t(w))[0].numpy(), ref, atol=1e-12)


def test_crop_kernels_equals_small_kernel_zero_padded():
    big = D.anisotropic_kernels(21, _t(2.0), _t(1.0), _t(0.4))
    small = D.anisotropic_kernels(9, _t(2.0), _t(1.0), _t(0.4))
    assert torch.allclose(D.crop_kernels(big, torch.tensor([9]))[0], F.pad(small[0], (6, 6, 6, 6)), atol=1e-12)


def test_random_kernels_sizes_sums_and_determinism():
    gens = lambda: [D._generator(k) for k in range(40)]  # noqa: E731
    kw = dict(max_size=21, kernel_list=list(D.KERNEL_TYPES), kernel_prob=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
              sinc_prob=0.3, sigma=[0.2, 3.0], betag=[0.5, 4.0], betap=[1.0, 2.0])
    k = D.random_kernels(gens(), **kw)
    assert k.shape == (40, 21, 21)
    assert torch.allclose(k.sum((1, 2)), torch.ones(40, dtype=torch.float64))
    support = set((k.abs() > 0).any(1).sum(-1).tolist())  # width of the non-zero columns
    # odd, centred, at most 21; narrow Gaussians underflow to fewer taps than their window
    assert all(s % 2 == 1 and s <= 21 for s in support) and len(support & set(range(7, 22, 2))) > 2
    assert (k < 0).any()  # some sinc kernels (negative lobes) were drawn at sinc_prob 0.3
    assert torch.equal(k, D.random_kernels(gens(), **kw))


# ---------------------------------------------------------------- operators


def test_blur_matches_per_item_reflect_convolution():
    x = torch.rand(3, 3, 20, 17, dtype=torch.float64)
    ks = D.anisotropic_kernels(7, _t(1.0, 2.0, 0.5), _t(1.5, 0.7, 0.5), _t(0.2, 1.0, 0.0))
    ref = torch.cat([F.conv2d(F.pad(x[i : i + 1].transpose(0, 1), (3, 3, 3, 3), mode="reflect"), ks[i][None, None]).transpose(0, 1)
                     for i in range(3)])
    assert torch.allclose(D.blur(x, ks), ref, atol=1e-12)


def test_resize_area_half_is_2x2_mean_and_identity_is_noop():
    x = torch.rand(2, 3, 8, 6)
    assert torch.allclose(D.resize(x, scale=0.5, mode="area"), F.avg_pool2d(x, 2), atol=1e-6)
    assert D.resize(x, size=(8, 6), mode="bicubic") is x
    assert D.resize(x, scale=1.5, mode="bilinear").shape == (2, 3, 12, 9)
    with pytest.raises(ValueError, match="mode"):
        D.resize(x, scale=2, mode="nearest")


def test_gaussian_noise_statistics_grey_and_colour():
    x = torch.zeros(2, 3, 128, 128)
    gens = D._device_generators(torch.tensor([1, 2]), x.device)
    n = D.gaussian_noise(x, torch.tensor([0.1, 0.02]), torch.tensor([False, True]), gens)
    assert abs(n[0].std().item() - 0.1) < 0.005 and abs(n[1].std().item() - 0.02) < 0.001
    assert abs(n[0].mean().item()) < 0.005
    assert torch.equal(n[1, 0], n[1, 2]) and not torch.equal(n[0, 0], n[0, 2])


def test_poisson_noise_variance_matches_formula():
    # a constant image has one 8-bit level -> v = 1; Poisson(x) - x has variance x, times scale^2
    x = torch.full((2, 3, 96, 96), 128 / 255)
    gens = D._device_generators(torch.tensor([3, 4]), x.device)
    n = D.poisson_noise(x, torch.tensor([0.5, 1.0]), torch.tensor([False, True]), gens)
    assert abs(n[0].var().item() - 128 / 255 * 0.25) < 0.03
    assert abs(n[1, 0].var().item() - 128 / 255) < 0.08
    assert torch.equal(n[1, 0], n[1, 1])
    assert D._levels(torch.tensor([[0, 1, 2, 3, 4]])).item() == 8  # 5 levels -> 2^3


def test_jpeg_close_to_libjpeg_and_monotone_in_quality():
    from PIL import Image
    from skimage import data

    im = np.ascontiguousarray(data.astronaut()[:64, :64])
    x = torch.from_numpy(im).permute(2, 0, 1)[None].float().repeat(2, 1, 1, 1) / 255
    out = D.jpeg(x, torch.tensor([30.0, 95.0]))
    err = (out - x).pow(2).mean((1, 2, 3))
    assert err[0] > 2 * err[1] > 0  # lower quality, larger error
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, "JPEG", quality=30)
    pil = torch.from_numpy(np.asarray(Image.open(buf)).copy()).permute(2, 0, 1).float() / 255
    psnr = -10 * torch.log10((torch.round(out[0] * 255) / 255 - pil).pow(2).mean())
    assert psnr > 36  # measured ~41 dB (bench/jpeg_vs_libjpeg.py)


def test_usm_sharp_keeps_flat_areas_and_raises_edge_contrast():
    x = torch.full((1, 3, 64, 64), 0.5)
    assert torch.allclose(D.usm_sharp(x), x, atol=1e-6)
    x[..., 32:] = 0.7
    y = D.usm_sharp(x)
    assert y[..., 31].mean() < 0.5 - 1e-3 and y[..., 32].mean() > 0.7 + 1e-3


# ---------------------------------------------------------------- pipeline


def test_degrade_shapes_range_quantisation_and_determinism():
    cfg = D.DegradationConfig()
    hr = torch.rand(3, 3, 64, 48)
    keys = D.batch_keys(3, seed=7)
    lr = D.degrade(hr, cfg, keys, scale=4)
    assert lr.shape == (3, 3, 16, 12) and lr.dtype == hr.dtype
    assert lr.min() >= 0 and lr.max() <= 1
    assert torch.equal(torch.round(lr * 255) / 255, lr)
    assert torch.equal(lr, D.degrade(hr, cfg, keys, scale=4))
    assert not torch.equal(lr, D.degrade(hr, cfg, D.batch_keys(3, seed=8), scale=4))


def test_per_item_draws_do_not_depend_on_batch_mates():
    cfg = D.DegradationConfig()
    a = D.draw_params(cfg, torch.tensor([11, 22, 33]))
    b = D.draw_params(cfg, torch.tensor([99, 22]))
    for f in ("kernel1", "kernel2", "sinc", "sigma1", "quality1", "quality2", "gray2", "noise_seeds"):
        assert torch.equal(getattr(a, f)[1], getattr(b, f)[1]), f
    assert D.item_key(0, 1, 2) != D.item_key(0, 2, 1)


@pytest.mark.parametrize("variant", ["all_on", "poisson_grey", "all_off"])
def test_every_branch_runs_on_a_batch(variant):
    """Throughput path exercised (not timed): every operator on a batch at once."""
    cfg = D.DegradationConfig()
    if variant == "all_on":
        cfg = dataclasses.replace(cfg, sinc_prob=1.0, second_blur_prob=1.0, final_sinc_prob=1.0, gaussian_noise_prob=1.0,
                                  resize_prob=[1.0, 0.0, 0.0], resize_prob2=[0.0, 1.0, 0.0])
    elif variant == "poisson_grey":
        cfg = dataclasses.replace(cfg, gaussian_noise_prob=0.0, gaussian_noise_prob2=0.0, gray_noise_prob=1.0, gray_noise_prob2=1.0)
    else:
        cfg = dataclasses.replace(cfg, second_blur_prob=0.0, final_sinc_prob=0.0, resize_prob=[0.0, 0.0, 1.0],
                                  noise_range=[0.0, 0.0], noise_range2=[0.0, 0.0], gaussian_noise_prob=1.0,
                                  gaussian_noise_prob2=1.0, jpeg_range=[100.0, 100.0], jpeg_range2=[100.0, 100.0])
    hr = torch.rand(6, 3, 32, 32)
    lr, target = D.Degradation(cfg, scale=2)(hr, D.batch_keys(6))
    assert lr.shape == (6, 3, 16, 16) and target.shape == hr.shape
    assert torch.isfinite(lr).all()
    if variant == "all_off":  # only blur k1, JPEG q100, resize: close to a blurred downscale
        assert (lr - F.avg_pool2d(target, 2)).abs().mean() < 0.2


@pytest.mark.parametrize("key,value,msg", [
    ("sinc_prob", 1.5, "probability"),
    ("gray_noise_prob2", -0.1, "probability"),
    ("blur_kernel_size", 20, "odd"),
    ("blur_kernel_size2", 41, "odd"),
    ("jpeg_range", [0, 95], "1 <= low"),
    ("jpeg_range2", [30, 101], "<= 100"),
    ("kernel_list", ["iso", "gauss"], "non-empty list"),
    ("kernel_prob", [0.5, 0.5], "probabilities"),
    ("resize_prob", [0.5, 0.6, 0.1], "sum to 1"),
])
def test_bad_values_name_the_key(key, value, msg):
    cfg = dataclasses.replace(D.DegradationConfig(), **{key: value})
    with pytest.raises(ValueError, match=rf"^degradation\.{key} .*{msg}"):
        cfg.validate()
    assert D.DegradationConfig().validate() is not None


def test_images_smaller_than_the_kernel_radius_still_blur():
    x = torch.rand(2, 3, 5, 9)
    k = D.anisotropic_kernels(21, _t(2.0, 1.0), _t(2.0, 1.0), _t(0.0, 0.0))
    y = D.blur(x, k)
    assert y.shape == x.shape and torch.isfinite(y).all()
    # replicate borders: a constant image stays constant
    assert torch.allclose(D.blur(torch.full_like(x, 0.3), k), torch.full_like(x, 0.3), atol=1e-6)


def test_keyed_items_follow_seed_epoch_and_index():
    from gradguide.train.sampler import EpochIndexed

    class Tiny(torch.utils.data.Dataset):
        def __init__(self):
            self.epoch = -1

        def set_epoch(self, e):
            self.epoch = e

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(3, 2, 2), torch.full((3, 8, 8), float(i))

    ds = EpochIndexed(D.KeyedItems(Tiny(), seed=5))
    lr, hr, key = ds[(2, 1)]
    assert key.dtype == torch.int64 and int(key) == D.item_key(5, 2, 1) and hr[0, 0, 0] == 1
    assert ds.dataset.dataset.epoch == 2  # set_epoch reached the wrapped dataset
    batch = torch.utils.data.default_collate([ds[(0, 0)], ds[(0, 2)]])
    assert batch[2].tolist() == [D.item_key(5, 0, 0), D.item_key(5, 0, 2)]


def test_throughput_bench_runs_and_is_deterministic():
    """bench/degrade_throughput.py's measurement, exercised (not timed) on a tiny batch."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "degrade_throughput.py"
    spec = importlib.util.spec_from_file_location("degrade_throughput", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.measure("cpu", batch=2, crop=32, repeats=1)
    assert r["lr_shape"] == (2, 3, 8, 8) and r["deterministic"] and r["crops_per_second"] > 0
    assert 0 < r["draw_share"] < 10


def test_usm_matches_a_2d_gaussian_reference():
    """Separable passes == the 2-D Gaussian of cv2.getGaussianKernel(51, 0), reflect borders."""
    x = torch.rand(1, 3, 60, 60, dtype=torch.float64)
    sigma = 0.3 * ((51 - 1) * 0.5 - 1) + 0.8
    ax = torch.arange(51, dtype=torch.float64) - 25
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    k = torch.outer(g, g) / torch.outer(g, g).sum()
    blur = lambda t: F.conv2d(F.pad(t.reshape(-1, 1, 60, 60), (25,) * 4, mode="reflect"), k[None, None]).reshape(t.shape)  # noqa: E731
    res = x - blur(x)
    soft = blur((res.abs() * 255 > 10).double())
    ref = soft * (x + 0.5 * res).clamp(0, 1) + (1 - soft) * x
    assert torch.allclose(D.usm_sharp(x), ref, atol=1e-10)
