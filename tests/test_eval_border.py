"""gradguide.eval.border: what an image's edge costs a method, on the same pixels."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from gradguide.data.imresize import imresize
from gradguide.eval.border import BorderCost, border_cost, border_study
from gradguide.eval.metrics import frame_stats
from gradguide.eval.features import bicubic_upscale

pytestmark = pytest.mark.usefixtures("one_thread")


class Nearest(nn.Module):
    """x4 nearest-neighbour upsampling: uses no context at all."""

    scale = 4

    def forward(self, x):
        return F.interpolate(x, scale_factor=4, mode="nearest")


class BrightFrame(Nearest):
    """The old demo model's artifact: the outermost 8 output px 0.1 too bright."""

    def forward(self, x):
        y = super().forward(x)
        frame = torch.ones_like(y, dtype=torch.bool)
        frame[..., 8:-8, 8:-8] = False
        return torch.where(frame, y + 0.1, y).clamp(0, 1)


def _photo(h=160, w=176, seed=0):
    """A smooth random colour image, uint8 (H, W, 3)."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return imresize(small, 8.0)


def test_bright_frame_costs_at_the_border_and_not_with_context():
    hr = _photo()
    plain = border_cost(Nearest(), hr, 4, margin=16)
    bright = border_cost(BrightFrame(), hr, 4, margin=16)
    assert isinstance(bright, BorderCost)
    # with context the frame of the cropped image is 16 px inside: the bright frame is cut away
    assert bright.frame_with_context == pytest.approx(plain.frame_with_context, abs=1e-9)
    assert bright.bias_with_context == pytest.approx(plain.bias_with_context, abs=1e-9)
    # at the border it is the frame: ~22 Y levels too bright, many dB lost
    assert bright.bias_at_border > plain.bias_at_border + 15
    assert bright.cost > plain.cost + 5
    assert bright.cost == pytest.approx(bright.frame_with_context - bright.frame_at_border)


def test_bicubic_passes_are_the_frame_of_the_two_upscalings():
    hr = _photo(seed=1)
    m = 16
    got = border_cost(None, hr, 4, margin=m)
    inner = hr[m:-m, m:-m]
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double() / 255  # noqa: E731
    at = frame_stats(t(bicubic_upscale(imresize(inner, 0.25), 4)), t(inner))
    ctx = frame_stats(t(bicubic_upscale(imresize(hr, 0.25), 4)[m:-m, m:-m]), t(inner))
    assert got.frame_at_border == pytest.approx(float(at[0][0]))
    assert got.frame_with_context == pytest.approx(float(ctx[0][0]))
    assert got.bias_at_border == pytest.approx(float(at[2][0]))
    # the image's HR is cropped to the scale first: an odd size gives the same answer
    odd = np.pad(hr, ((0, 3), (0, 2), (0, 0)))
    assert border_cost(None, odd, 4, margin=m) == got


def test_border_cost_refuses_bad_arguments():
    hr = _photo()
    with pytest.raises(ValueError, match="margin"):
        border_cost(None, hr, 4, margin=10)
    with pytest.raises(ValueError, match="too small"):
        border_cost(None, hr, 4, margin=72)
    with pytest.raises(ValueError, match="uint8"):
        border_cost(None, hr.astype(np.float32), 4)


def test_border_study_over_a_folder_skips_small_images_for_every_method(tmp_path):
    for k, (h, w) in enumerate([(160, 176), (168, 160), (48, 48)]):
        Image.fromarray(_photo(h, w, seed=k)).save(tmp_path / f"im{k}.png")
    out = border_study({"bicubic": "bicubic", "nearest": Nearest(), "bright": BrightFrame()}, tmp_path, 4, margin=16)
    assert set(out) == {"bicubic", "nearest", "bright"}
    for per in out.values():
        assert sorted(per) == ["im0", "im1"]  # im2 is too small for a 16-px margin and an 8-px frame
    for n in ("im0", "im1"):
        # nearest uses no context: the edge costs it (almost) nothing; the bright frame a lot
        assert abs(out["nearest"][n].cost) < 0.1 and out["bright"][n].cost > 5
        assert out["bright"][n].bias_at_border > 15 > abs(out["bicubic"][n].bias_at_border)
    # bicubic reads 2 px beyond the frame: with the real content there it does better
    assert all(out["bicubic"][n].cost > 0 for n in ("im0", "im1"))
