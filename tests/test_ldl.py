"""LDL artifact loss (Liang et al. 2022) and its gradient-map variant."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradguide.losses import SPSRLoss, create_loss
from gradguide.losses.ldl import GradientLDLLoss, LDLLoss, artifact_map, ldl_loss, local_variance
from gradguide.ops import gradient_map

pytestmark = pytest.mark.usefixtures("one_thread")


def _unfold_var(x, k):
    # the authors' get_local_weights: reflect pad, unfold every window, unbiased variance
    p = (k - 1) // 2
    u = F.pad(x, (p, p, p, p), mode="reflect").unfold(2, k, 1).unfold(3, k, 1)
    return torch.var(u, dim=(-1, -2), unbiased=True)


def _reference_map(gt, out, ema, k=7):
    r_ema = torch.sum(torch.abs(gt - ema), 1, keepdim=True)
    r = torch.sum(torch.abs(gt - out), 1, keepdim=True)
    patch = torch.var(r, dim=(-1, -2, -3), keepdim=True) ** (1 / 5)
    w = patch * _unfold_var(r, k)
    w[r < r_ema] = 0
    return w


def test_local_variance_matches_unfolded_windows():
    x = torch.rand(2, 3, 13, 11, dtype=torch.float64)
    for k in (3, 7):
        assert torch.allclose(local_variance(x, k), _unfold_var(x, k), atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        local_variance(x, 4)


def test_artifact_map_matches_the_authors_formula():
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    out = gt + 0.1 * torch.randn_like(gt)
    ema = gt + 0.1 * torch.randn_like(gt)
    m = artifact_map(out, gt, ema)
    assert m.shape == (2, 1, 24, 20)
    assert torch.allclose(m.double(), _reference_map(gt, out, ema), atol=1e-6)
    assert (m == 0).any() and (m > 0).any()  # gated where the model beats its EMA


def test_loss_is_zero_where_the_model_beats_its_ema_and_positive_otherwise():
    torch.manual_seed(1)
    hr = torch.rand(2, 3, 16, 16)
    sr = hr + 0.05 * torch.randn_like(hr)
    assert ldl_loss(sr, hr, hr + 10.0) == 0  # the EMA is worse everywhere: no artifact
    assert ldl_loss(sr, hr, hr) > 0  # a perfect EMA: every irregular error is an artifact
    g = ldl_loss(sr, hr, hr, domain="gradient")
    gs, gh = gradient_map(sr), gradient_map(hr)
    w = artifact_map(gs, gh, gh)
    assert torch.allclose(g, F.l1_loss(w * gs, w * gh))


@pytest.mark.parametrize("cls", [LDLLoss, GradientLDLLoss])
def test_every_parameter_gets_a_gradient(cls):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    lr, hr = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        ema_sr = hr.clone()
    loss = cls(weight=2.0)(net(lr), hr, ema_sr=ema_sr)
    loss.backward()
    assert loss > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_registered_as_spsr_terms_that_need_the_ema():
    torch.manual_seed(3)
    off = dict(pixel=0.0, perceptual=0.0, gan=0.0, gradient_pixel=0.0, gradient_gan=0.0, branch=0.0)
    assert isinstance(create_loss("ldl"), LDLLoss) and create_loss("ldl_gradient").domain == "gradient"
    loss = SPSRLoss(**off, terms={"ldl": 1.0, "ldl_gradient": {"weight": 0.5, "kernel_size": 5}})
    assert loss.needs_ema and not SPSRLoss(**off).needs_ema
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    hr = torch.rand(2, 3, 16, 16)
    gl = loss(sr, hr, ema_sr=hr)
    assert set(gl.terms) == {"ldl", "ldl_gradient", "total"} and gl.terms["ldl"] > 0
    gl.total.backward()
    assert sr.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="enable train.ema"):
        loss(sr, hr)
    with pytest.raises(ValueError, match="kernel_size"):
        LDLLoss(kernel_size=4)
