"""MATLAB-compatible bicubic imresize."""
import math

import numpy as np
import pytest
import torch

from gradguide.data.imresize import cubic, imresize, output_size, resize_matrix


def test_cubic_kernel_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64)
    # Keys a=-0.5: k(0)=1, k(0.5)=0.5625, k(1)=0, k(1.5)=-0.0625, k(2)=0
    assert torch.allclose(cubic(x), torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0], dtype=torch.float64))


def test_rows_sum_to_one_and_mirror_border():
    m = resize_matrix(8, 2, 0.25)
    assert torch.allclose(m.sum(1), torch.ones(2, dtype=torch.float64))
    # antialiased kernel at 1/4 spans 16 taps: every input pixel contributes
    assert (m.abs() > 0).sum() > 8
    # a 1-pixel signal upscaled stays constant (mirrored taps all hit the same pixel)
    m1 = resize_matrix(1, 4, 4.0)
    assert torch.allclose(m1, torch.ones(4, 1, dtype=torch.float64))


def test_hand_derived_values_upscale():
    # imresize([1 2 3 4], [1 8], 'bicubic'), first output worked by hand from MATLAB's
    # contributions(): u = 1/2 + 0.5*(1 - 1/2) = 0.75, taps j = -2..3, weights
    # cubic(0.75 - j) = [0, -0.0234375, 0.2265625, 0.8671875, -0.0703125, 0], mirrored
    # indices -1 -> 2, 0 -> 1, so y1 = -0.046875 + 0.2265625 + 0.8671875 - 0.140625 = 0.90625
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    y = imresize(x, size=(1, 8))
    assert y[0, 0].item() == pytest.approx(0.90625, abs=1e-12)
    # mirror symmetry: reversing the input reverses the output
    assert torch.allclose(imresize(x.flip(-1), size=(1, 8)), y.flip(-1), atol=1e-12)
    # interior of a linear ramp is reproduced exactly (cubic kernels preserve linears)
    ramp = torch.arange(32, dtype=torch.float64)[None]
    up = imresize(ramp, size=(1, 64))
    u = torch.arange(1, 65, dtype=torch.float64) / 2 + 0.25 - 1
    assert torch.allclose(up[0, 4:-4], u[4:-4], atol=1e-12)


def test_identity_and_constant():
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    assert torch.equal(imresize(x, 1.0), x)
    c = torch.full((1, 3, 12, 12), 0.3, dtype=torch.float64)
    for s in (0.25, 0.5, 3.0):
        assert torch.allclose(imresize(c, s), torch.full_like(imresize(c, s), 0.3))


def test_output_size_matlab_ceil():
    assert output_size((10, 7), 0.5, None)[0] == (5, 4)
    assert output_size((10, 7), None, (3, 2)) == ((3, 2), (0.3, 2 / 7))
    with pytest.raises(ValueError):
        output_size((10, 7), None, None)
    with pytest.raises(ValueError):
        output_size((10, 7), 0.5, (3, 3))


def test_batched_equals_single_and_dtypes():
    x = torch.rand(2, 3, 16, 12)
    y = imresize(x, 0.25)
    assert y.shape == (2, 3, 4, 3) and y.dtype == torch.float32
    y1 = imresize(x[1, 2], 0.25)
    assert torch.allclose(y[1, 2], y1, atol=1e-6)
    y64 = imresize(x.double(), 0.25)
    assert torch.allclose(y64.float(), y, atol=1e-5)
    with pytest.raises(TypeError):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 0.5)


def test_separable_order_smaller_scale_first():
    # anisotropic: result equals applying the row and column matrices
    x = torch.rand(10, 8, dtype=torch.float64)
    y = imresize(x, size=(5, 16))
    mh = resize_matrix(10, 5, 0.5)
    mw = resize_matrix(8, 16, 2.0)
    assert torch.allclose(y, mh @ x @ mw.T, atol=1e-12)


def test_numpy_uint8_rounds_like_matlab():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(12, 8, 3), dtype=np.uint8)
    y = imresize(a, 0.5)
    assert y.dtype == np.uint8 and y.shape == (6, 4, 3)
    # same as float path rounded after each pass
    t = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)
    r = torch.floor(resize_matrix(12, 6, 0.5) @ t + 0.5).clamp(0, 255)
    r = torch.floor(r @ resize_matrix(8, 4, 0.5).T + 0.5).clamp(0, 255)
    assert np.array_equal(y, r.permute(1, 2, 0).numpy().astype(np.uint8))
    g = imresize(a[..., 0], 2)
    assert g.shape == (24, 16) and g.dtype == np.uint8
    f = imresize(a.astype(np.float32) / 255, 2)
    assert f.dtype == np.float32 and f.shape == (24, 16, 3)


def test_matches_downscale_then_antialias_off():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    a = imresize(x, 0.5, antialiasing=True)
    b = imresize(x, 0.5, antialiasing=False)
    assert not torch.allclose(a, b)
    # without antialiasing at exactly 1/2 the kernel samples taps at +-0.5, +-1.5
    m = resize_matrix(8, 4, 0.5, antialiasing=False)
    assert torch.allclose(m[1, 1:5], torch.tensor([-0.0625, 0.5625, 0.5625, -0.0625], dtype=torch.float64))


def test_set5_bicubic_psnr_y(shared_dir):
    """MATLAB protocol on Set5 x4 (uint8 in, uint8 out): published bicubic PSNR-Y 28.42 dB."""
    import glob
    import os

    from PIL import Image

    def y(im):
        im = im.astype(np.float64) / 255
        return np.round(16 + 65.481 * im[..., 0] + 128.553 * im[..., 1] + 24.966 * im[..., 2])

    psnrs = []
    for f in sorted(glob.glob(os.path.join(shared_dir, "data", "test", "Set5", "*.png"))):
        hr = np.asarray(Image.open(f).convert("RGB"))
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        sr = imresize(imresize(hr, 0.25), 4)
        d = (y(sr) - y(hr))[4:-4, 4:-4]
        psnrs.append(10 * math.log10(255**2 / (d**2).mean()))
    assert len(psnrs) == 5
    assert abs(np.mean(psnrs) - 28.42) <= 0.01
