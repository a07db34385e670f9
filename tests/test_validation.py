"""gradguide.train.validation.validate: Y-channel figures, and the colour figures that
show a colour or intensity drift (which PSNR-Y/SSIM-Y hide)."""
import pytest
import torch
import torch.nn.functional as F

from gradguide.train.validation import validate

pytestmark = pytest.mark.usefixtures("one_thread")


class Shifted(torch.nn.Module):
    """Nearest x2 upscaling plus a constant per-channel offset."""

    def __init__(self, offset):
        super().__init__()
        self.register_buffer("offset", torch.tensor(offset).view(1, 3, 1, 1))

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest") + self.offset


def _data(n=3, grey=False):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        lr = torch.rand(1 if grey else 3, 12, 12, generator=g).expand(3, 12, 12).clone() * 0.6 + 0.2
        out.append((lr, F.interpolate(lr[None], scale_factor=2, mode="nearest")[0]))
    return out


def test_colour_figures_see_a_red_shift_that_y_barely_shows():
    data = _data()
    exact = validate(Shifted([0.0, 0.0, 0.0]), data, scale=2, colour=True)
    red = validate(Shifted([20 / 255, 0.0, 0.0]), data, scale=2, colour=True)
    assert exact["bias_r"] == exact["bias_g"] == exact["bias_b"] == 0.0 and exact["ciede2000"] == 0.0
    assert red["bias_r"] == pytest.approx(20 / 255, abs=1e-9) and red["bias_g"] == red["bias_b"] == 0.0
    assert red["ciede2000"] > 5.0
    # Y weighs red by 0.257: a 20-level red shift is about 5 levels of Y, 20 of R
    assert red["psnr_rgb"] < red["psnr_y"]
    assert red["images"] == 3


def test_without_colour_only_the_y_figures():
    got = validate(Shifted([0.0, 0.0, 0.0]), _data(2), scale=2)
    assert set(got) == {"psnr_y", "ssim_y", "images"}


def test_model_mode_is_restored_and_max_images_counts():
    m = Shifted([0.01, 0.0, -0.01]).train()
    got = validate(m, _data(4), scale=2, max_images=2, colour=True)
    assert m.training and got["images"] == 2
    assert got["bias_b"] < 0 < got["bias_r"]
