"""gradguide.infer.ensemble: the 8 symmetries of the square, their inverses, the x8
self-ensemble (function and module twin), and its use in upscale and eval."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import gradguide
from gradguide.infer.ensemble import SelfEnsemble, dihedral, self_ensemble, undo_dihedral
from gradguide.types import SROutput

pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(torch.nn.Module):
    """An x2 conv net that is *not* symmetric, with a fake gradient output."""

    scale = 2

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 12, 3, padding=1)

    def forward(self, x):
        sr = F.pixel_shuffle(self.b(torch.relu(self.a(x))), 2)
        return SROutput(sr, sr.abs(), x * 2)


def test_every_symmetry_is_undone_and_all_eight_differ():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    seen = set()
    for k in range(8):
        y = dihedral(x, k)
        assert torch.equal(undo_dihedral(y, k), x)
        seen.add(tuple(y.flatten().tolist()) + tuple(y.shape))
    assert len(seen) == 8
    with pytest.raises(ValueError):
        dihedral(x, 8)


def test_one_transform_is_the_model_and_eight_average_the_mapped_back_outputs():
    m = Tiny().eval()
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        plain = m(x)
        one = self_ensemble(m, x, transforms=1)
        eight = self_ensemble(m, x)
        ref = sum(undo_dihedral(m(dihedral(x, k)).sr, k) for k in range(8)) / 8
    assert torch.equal(one.sr, plain.sr) and torch.equal(one.grad, plain.grad)
    assert torch.allclose(eight.sr, ref, atol=1e-6) and eight.sr.shape == (1, 3, 12, 14)
    assert not torch.allclose(eight.sr, plain.sr, atol=1e-4)  # the model is not symmetric
    assert torch.allclose(eight.lr_grad, x * 2, atol=1e-6)  # an equivariant output maps back exactly
    # a plain tensor model gives sr only
    out = self_ensemble(lambda t: F.interpolate(t, scale_factor=2, mode="nearest"), x)
    assert out.grad is None and torch.allclose(out.sr, F.interpolate(x, scale_factor=2, mode="nearest"))


def test_module_twin_keeps_scale_and_every_parameter_gets_a_gradient():
    m = Tiny()
    net = SelfEnsemble(m)
    assert net.scale == 2 and list(net.parameters()) == list(m.parameters())
    net(torch.rand(2, 3, 5, 4)).sr.mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError):
        SelfEnsemble(m, transforms=0)


def test_upscale_and_eval_run_the_ensemble(tmp_path):
    m = Tiny().eval()
    rng = np.random.default_rng(0)
    img = (rng.random((20, 18, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    gradguide.infer.upscale(m, [tmp_path / "a.png"], tmp_path / "plain", progress=False)
    gradguide.infer.upscale(m, [tmp_path / "a.png"], tmp_path / "x8", progress=False, self_ensemble=True)
    plain = np.asarray(Image.open(tmp_path / "plain" / "a.png")).astype(int)
    x8 = np.asarray(Image.open(tmp_path / "x8" / "a.png")).astype(int)
    with torch.no_grad():
        want = self_ensemble(m, torch.from_numpy(img).permute(2, 0, 1).float().div(255)[None]).sr
    want = torch.floor(want.clamp(0, 1) * 255 + 0.5)[0].permute(1, 2, 0).numpy()
    assert x8.shape == (40, 36, 3) and np.abs(x8 - want).max() <= 1 and np.abs(x8 - plain).max() > 1
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray(np.asarray(Image.fromarray(img).resize((36, 40)))).save(hr / "b.png")
    rep = gradguide.evaluate({"tiny": m}, hr, metrics=["PSNR"], self_ensemble=True)
    assert rep.methods == ["tiny+x8"]
