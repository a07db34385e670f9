"""Protocol metrics: Y of BT.601, PSNR/SSIM with crop and rounding, GMSD, gradient L1."""
import math

import numpy as np
import pytest
import torch

from gradguide.eval import metrics as M
from gradguide.eval.metrics import crop_border, gmsd, gradient_l1, psnr_y, quantize, rgb_to_y, ssim_y


def test_rgb_to_y_matches_matlab_rgb2ycbcr():
    # MATLAB rgb2ycbcr(uint8) on pure colours: black 16, white 235, red 81, green 145, blue 41
    px = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.float64)
    y = rgb_to_y(px.t()[:, :, None]).flatten()
    assert y.tolist() == [16.0, 235.0, 81.0, 145.0, 41.0]


def test_quantize_rounds_half_up_and_clips():
    x = torch.tensor([-0.1, 0.5 / 255, 1.49 / 255, 1.2])
    assert quantize(x).tolist() == [0.0, 1.0, 1.0, 255.0]


def test_psnr_known_value_and_crop():
    hr = torch.full((1, 3, 12, 12), 0.5)
    sr = hr.clone()
    sr[..., :2, :] = 0.0  # damage only the border
    assert math.isinf(psnr_y(sr, hr, crop=2).item())
    assert psnr_y(sr, hr, crop=0).item() < 30
    # uniform Y error of 1 grey level -> 48.13 dB
    a = torch.full((1, 3, 8, 8), 100, dtype=torch.uint8)
    b = torch.full((1, 3, 8, 8), 101, dtype=torch.uint8)
    ya, yb = rgb_to_y(a.double()), rgb_to_y(b.double())
    d = (ya - yb).abs().mean().item()
    assert psnr_y(a, b).item() == pytest.approx(10 * math.log10(255**2 / d**2), abs=1e-9)


def test_ssim_matches_skimage_gaussian():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 32, 30, generator=g)
    sr = (hr + 0.1 * torch.randn(2, 3, 32, 30, generator=g)).clamp(0, 1)
    ours = ssim_y(sr, hr, crop=3)
    for i in range(2):
        a = crop_border(rgb_to_y(quantize(sr[i])), 3)[0].numpy()
        b = crop_border(rgb_to_y(quantize(hr[i])), 3)[0].numpy()
        ref = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    assert ssim_y(hr, hr).allclose(torch.ones(2, dtype=torch.float64))


def test_gmsd_zero_for_identical_positive_for_blur():
    g = torch.Generator().manual_seed(1)
    hr = torch.rand(1, 3, 32, 32, generator=g)
    blur = torch.nn.functional.avg_pool2d(hr, 3, 1, 1)
    assert gmsd(hr, hr).item() == 0.0
    assert gmsd(blur, hr).item() > 0.05
    assert gmsd(blur, hr, crop=2).shape == (1,)


def test_gradient_l1():
    hr = torch.zeros(1, 3, 10, 10)
    hr[..., 5:] = 1.0
    flat = torch.zeros_like(hr)
    assert gradient_l1(hr, hr).item() == 0.0
    v = gradient_l1(flat, hr, crop=1).item()
    # edge rows 4 and 5 have |I_y| = 1 over 8 cropped columns of 8x8 pixels
    assert v == pytest.approx(2 * 8 / 64, abs=1e-9)


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        psnr_y(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="crop"):
        psnr_y(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), crop=4)
    with pytest.raises(ValueError, match="window"):
        ssim_y(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_frame_metrics_see_a_bright_frame():
    """A bright 3-px frame on an otherwise exact SR: the frame PSNR drops, the inner one is
    untouched (infinite error-free PSNR is avoided with noise), the frame bias is positive
    and about the frame's brightening averaged over the 8-px frame."""
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 48, 40, generator=g) * 0.6 + 0.2
    noisy = (hr + 0.01 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    bright = noisy.clone()
    bright[..., :3, :] += 0.1
    bright[..., -3:, :] += 0.1
    bright[..., :, :3] += 0.1
    bright[..., :, -3:] += 0.1
    f0, f1 = M.psnr_y_frame(noisy, hr), M.psnr_y_frame(bright, hr)
    i0, i1 = M.psnr_y_frame(noisy, hr, inner=True), M.psnr_y_frame(bright, hr, inner=True)
    assert f1.item() < f0.item() - 5 and i1.item() == i0.item()
    b0, b1 = M.frame_bias_y(noisy, hr).item(), M.frame_bias_y(bright, hr).item()
    assert abs(b0) < 0.3 and b1 > 5  # 0.1 of 219 Y levels on 3 of the 8 px (corners overlap): about 10
    dark = noisy.clone()
    dark[..., :2, :] -= 0.2
    assert M.frame_bias_y(dark, hr).item() < -2
    with pytest.raises(ValueError, match="frame"):
        M.frame_bias_y(hr[..., :16, :16], hr[..., :16, :16])
