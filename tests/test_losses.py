import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradguide.losses as L
import gradguide.losses.spsr as LS
from gradguide.discriminators import VGGDiscriminator
from gradguide.errors import CheckpointError, GradguideError
from gradguide.ops import gradient_map
from gradguide.types import SROutput


pytestmark = pytest.mark.usefixtures("one_thread")


def _imgs(b=2, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g), torch.rand(b, c, h, w, generator=g)


class TinyExtractor(nn.Module):
    """Stand-in for VGG19 in tests (a conv with ImageNet-free weights)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


# ----------------------------------------------------------------------------- pixel


@pytest.mark.parametrize("criterion", ["l1", "mse", "charbonnier"])
def test_pixel_zero_on_identical_and_reductions(criterion):
    a, b = _imgs()
    assert L.pixel_loss(a, a.clone(), criterion=criterion).item() == 0.0
    none = L.pixel_loss(a, b, criterion=criterion, reduction="none")
    assert none.shape == a.shape
    mean = L.pixel_loss(a, b, criterion=criterion)
    total = L.pixel_loss(a, b, criterion=criterion, reduction="sum")
    assert mean.ndim == 0 and mean.item() > 0
    torch.testing.assert_close(total, none.sum())
    torch.testing.assert_close(mean, none.mean())


def test_pixel_known_values_and_gradient():
    z = torch.zeros(1, 1, 2, 2)
    assert L.pixel_loss(z + 1, z, criterion="l1").item() == pytest.approx(1.0)
    assert L.pixel_loss(z + 2, z, criterion="mse").item() == pytest.approx(4.0)
    # Charbonnier ~ |d| - eps for |d| >> eps
    assert L.pixel_loss(z + 1, z, criterion="charbonnier", eps=1e-3).item() == pytest.approx(1.0 - 1e-3, abs=1e-5)
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    loss = L.PixelLoss("l1", weight=2.0)(x, torch.zeros(1, 3, 4, 4))
    loss.backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0 / x.numel()))


def test_pixel_bad_args():
    a, b = _imgs()
    with pytest.raises(ValueError, match="shape"):
        L.pixel_loss(a, b[:, :2])
    with pytest.raises(ValueError, match="criterion"):
        L.pixel_loss(a, b, criterion="l3")
    with pytest.raises(ValueError, match="reduction"):
        L.PixelLoss(reduction="avg")
    with pytest.raises(ValueError, match="weight"):
        L.PixelLoss(weight=-1)


def test_pixel_half_inputs_give_float32():
    a, b = _imgs()
    assert L.pixel_loss(a.half(), b.half()).dtype == torch.float32


# ----------------------------------------------------------------------------- gradient-space


def test_gradient_pixel_loss_matches_definition_and_flows():
    a, b = _imgs()
    assert L.gradient_pixel_loss(a, a.clone()).item() == 0.0
    sr = a.clone().requires_grad_(True)
    loss = L.GradientPixelLoss("l1", weight=3.0)(sr, b)
    expected = 3.0 * (gradient_map(a) - gradient_map(b)).abs().mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_gradient_pixel_official_is_mse_on_pad2_maps():
    a, b = _imgs()
    none = L.gradient_pixel_loss(a, b, criterion="mse", padding="official_loss", reduction="none")
    assert none.shape == (2, 3, 18, 18)
    expected = F.mse_loss(gradient_map(a, padding="official_loss"), gradient_map(b, padding="official_loss"))
    torch.testing.assert_close(none.mean(), expected)
    with pytest.raises(ValueError, match="padding"):
        L.GradientPixelLoss(padding="circular")


def test_branch_loss():
    _, hr = _imgs()
    target = gradient_map(hr)
    assert L.branch_loss(target.clone(), hr).item() == 0.0
    grad = torch.rand_like(hr, requires_grad=True)
    loss = L.BranchLoss(weight=0.5)(grad, hr)
    torch.testing.assert_close(loss, 0.5 * (grad - target).abs().mean())
    loss.backward()
    assert grad.grad.abs().sum() > 0
    assert L.branch_loss(grad, hr, reduction="none").shape == hr.shape
    with pytest.raises(ValueError, match="M\\(hr\\)"):
        L.branch_loss(grad[..., :8, :8], hr)


# ----------------------------------------------------------------------------- RaGAN


def test_ragan_values_symmetry_and_gradients():
    eq = torch.zeros(4, 1)
    assert L.ragan_d_loss(eq, eq).item() == pytest.approx(math.log(2))
    assert L.ragan_g_loss(eq, eq).item() == pytest.approx(math.log(2))
    g = torch.Generator().manual_seed(1)
    real = torch.randn(4, 1, generator=g, requires_grad=True)
    fake = torch.randn(4, 1, generator=g, requires_grad=True)
    # explicit formula
    sp = F.softplus
    d_expected = ((sp(-(real - fake.mean()))).mean() + (sp(fake - real.mean())).mean()) / 2
    torch.testing.assert_close(L.ragan_d_loss(real, fake), d_expected)
    # G loss is D loss with roles swapped
    torch.testing.assert_close(L.ragan_g_loss(real, fake), L.ragan_d_loss(fake, real))
    # D loss falls when real logits rise above fake ones
    assert L.ragan_d_loss(real + 5, fake) < L.ragan_d_loss(real, fake)
    L.RaGANLoss(weight=2.0).d_loss(real, fake).backward()
    assert real.grad.abs().sum() > 0 and fake.grad.abs().sum() > 0


def test_ragan_reductions_and_per_pixel_logits():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    none = L.ragan_d_loss(real, fake, reduction="none")
    assert none.shape == real.shape
    torch.testing.assert_close(none.mean(), L.ragan_d_loss(real, fake))
    torch.testing.assert_close(L.ragan_d_loss(real, fake, reduction="sum"), none.sum())
    assert L.ragan_g_loss(real.half(), fake.half()).dtype == torch.float32
    with pytest.raises(ValueError):
        L.ragan_d_loss(real, fake[:, :, :4])


# ----------------------------------------------------------------------------- perceptual


def test_perceptual_with_injected_extractor():
    a, b = _imgs()
    loss_fn = L.PerceptualLoss(extractor=TinyExtractor(), weight=2.0)
    assert loss_fn(a, a.clone()).item() == 0.0
    sr = a.clone().requires_grad_(True)
    loss = loss_fn(sr, b)
    loss.backward()
    assert sr.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss_fn.parameters())
    assert L.perceptual_loss(a, b, loss_fn.extractor, reduction="none").shape == (2, 4, 16, 16)


def _save_random_vgg19(path):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(3)
    feats = make_layers(cfgs["E"])
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    sd["classifier.6.bias"] = torch.zeros(10)  # extra keys are ignored
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd


def test_vgg_missing_weights_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(L.WeightsNotFoundError) as info:
        L.VGGFeatureExtractor()
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in msg
    assert "on_missing='drop'" in msg
    with pytest.raises(L.WeightsNotFoundError, match="nope.pth"):
        L.PerceptualLoss(weights=tmp_path / "nope.pth")
    with pytest.warns(RuntimeWarning, match="perceptual loss dropped"):
        assert L.create_perceptual_loss(on_missing="drop") is None
    with pytest.warns(RuntimeWarning, match="perceptual term dropped"):
        spsr = L.SPSRLoss(on_missing_vgg="drop")
    assert spsr.perceptual == 0.0 and spsr.feature_extractor is None
    # weight 0: no VGG needed at all, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.SPSRLoss(perceptual=0.0)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        L.VGGFeatureExtractor(weights=bad)


def test_vgg_loads_from_torch_cache(tmp_path, monkeypatch):
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    sd = _save_random_vgg19(home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    ext = L.VGGFeatureExtractor()  # default conv5_4 == features[:35]
    assert len(ext.features) == 35 and isinstance(ext.features[-1], nn.Conv2d)
    torch.testing.assert_close(ext.features[34].weight, sd["features.34.weight"])
    assert all(not p.requires_grad for p in ext.parameters())
    ext.train()
    assert not ext.training
    assert list(ext.state_dict()) == [k for k in ext.state_dict() if k.startswith("features.")]
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    y = ext(x)
    assert y.shape == (1, 512, 2, 2)
    # ImageNet normalisation is applied before the first conv
    mean = torch.tensor(L.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(L.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(ext(x), ext.features((x - mean) / std))
    y.sum().backward()
    assert x.grad.abs().sum() > 0
    # a shallower layer from an explicit path, with relu
    small = L.VGGFeatureExtractor("relu1_2", weights=home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    assert len(small.features) == 4 and (small(x) >= 0).all()
    with pytest.raises(ValueError, match="layer"):
        L.VGGFeatureExtractor("conv6_1", pretrained=False)


# ----------------------------------------------------------------------------- SPSRLoss


def _tiny_d(size=32):
    torch.manual_seed(0)
    return VGGDiscriminator(3, 2, input_size=size)


def _hr():
    return _imgs(h=32, w=32)[1]


def _out(hr, with_grad=True, seed=5):
    g = torch.Generator().manual_seed(seed)
    sr = torch.rand(hr.shape, generator=g).requires_grad_(True)
    grad = torch.rand(hr.shape, generator=g).requires_grad_(True) if with_grad else None
    return SROutput(sr, grad, None)


def _count_gradient_maps(monkeypatch):
    calls = []
    real = LS.gradient_map

    def counting(x, **kw):
        calls.append(kw.get("padding"))
        return real(x, **kw)

    monkeypatch.setattr(LS, "gradient_map", counting)
    return calls


def test_spsr_defaults_all_terms_and_gradients(monkeypatch):
    loss = L.SPSRLoss(feature_extractor=TinyExtractor())
    assert (loss.perceptual, loss.pixel, loss.gan, loss.gradient_pixel, loss.gradient_gan, loss.branch) == (
        1.0, 0.01, 0.005, 0.01, 0.005, 0.5,
    )
    hr = _hr()
    out = _out(hr)
    d_i, d_gm = _tiny_d(), _tiny_d()
    calls = _count_gradient_maps(monkeypatch)
    res = loss(out, hr, d_image=d_i, d_grad=d_gm)
    assert calls == ["zeros", "zeros"]  # M(SR) and M(HR) once each, reused by the branch term
    assert set(res.terms) == {"pixel", "perceptual", "gan", "gradient_pixel", "gradient_gan", "branch", "total"}
    assert all(isinstance(v, float) for v in res.terms.values())
    assert res.terms["total"] == pytest.approx(sum(v for k, v in res.terms.items() if k != "total"), rel=1e-5)
    assert res.terms["pixel"] == pytest.approx(0.01 * (out.sr - hr).abs().mean().item(), rel=1e-5)
    assert res.terms["branch"] == pytest.approx(0.5 * (out.grad - gradient_map(hr)).abs().mean().item(), rel=1e-5)
    assert res.total.dtype == torch.float32 and res.total.requires_grad
    res.total.backward()
    assert out.sr.grad.abs().sum() > 0 and out.grad.grad.abs().sum() > 0

    # D step reuses the maps; every D parameter gets a gradient, the generator none
    for p in (out.sr, out.grad):
        p.grad = None
    for d in (d_i, d_gm):
        d.zero_grad(set_to_none=True)
    calls.clear()
    dres = loss.discriminator_loss(out, hr, d_i, d_gm, sr_grad=res.sr_grad, hr_grad=res.hr_grad)
    assert calls == []
    assert {"d_image", "d_grad", "d_image_real", "d_image_fake", "total"} <= set(dres.terms)
    dres.total.backward()
    for d in (d_i, d_gm):
        for name, p in d.named_parameters():
            assert p.grad is not None, name
            # RaGAN only sees logit differences, so the last bias gets exactly zero gradient
            if name == "linear2.bias":
                assert p.grad.abs().item() < 1e-5
            else:
                assert p.grad.abs().sum() > 0, name
    assert out.sr.grad is None and out.grad.grad is None


def test_spsr_zero_on_perfect_output():
    hr = _hr()
    out = SROutput(hr.clone(), gradient_map(hr), None)
    res = L.SPSRLoss(feature_extractor=TinyExtractor(), gan=0, gradient_gan=0)(out, hr)
    assert res.terms["total"] == 0.0


def test_spsr_weight_zero_skips_terms(monkeypatch):
    hr = _hr()
    calls = _count_gradient_maps(monkeypatch)
    # ESRGAN: no gradient terms, no D_GM needed, M never computed
    esr = L.SPSRLoss.esrgan(feature_extractor=TinyExtractor())
    res = esr(_out(hr), hr, d_image=_tiny_d())
    assert set(res.terms) == {"pixel", "perceptual", "gan", "total"} and calls == []
    assert res.sr_grad is None and not esr.needs_gradient_discriminator
    # SPSR w/o GL: branch only, target computed once
    wo_gl = L.SPSRLoss(feature_extractor=TinyExtractor(), gradient_pixel=0, gradient_gan=0)
    res = wo_gl(_out(hr), hr, d_image=_tiny_d())
    assert "branch" in res.terms and "gradient_pixel" not in res.terms and len(calls) == 1
    # plain generator: no branch term even with weight 0.5; a bare tensor is accepted
    calls.clear()
    res = L.SPSRLoss(feature_extractor=TinyExtractor())(_out(hr, with_grad=False), hr, _tiny_d(), _tiny_d())
    assert "branch" not in res.terms and len(calls) == 2
    # PSNR: pixel only, no networks at all
    psnr = L.SPSRLoss.psnr()
    assert psnr.feature_extractor is None
    res = psnr(_out(hr).sr, hr)
    assert set(res.terms) == {"pixel", "total"}
    dres = psnr.discriminator_loss(_out(hr), hr)
    assert dres.terms == {"total": 0.0}


def test_spsr_official_preset(monkeypatch):
    hr = _hr()
    loss = L.SPSRLoss.official(feature_extractor=TinyExtractor())
    assert loss.gradient_criterion == "mse" and loss.gradient_padding == "official_loss"
    calls = _count_gradient_maps(monkeypatch)
    out = _out(hr)
    # 34x34 pad-2 maps reduce like 32x32 in the VGG discriminator
    res = loss(out, hr, d_image=_tiny_d(), d_grad=_tiny_d())
    assert calls == ["official_loss", "official_loss", "zeros"]
    assert res.sr_grad.shape == (2, 3, 34, 34)
    g_sr = gradient_map(out.sr.detach(), padding="official_loss")
    g_hr = gradient_map(hr, padding="official_loss")
    assert res.terms["gradient_pixel"] == pytest.approx(0.01 * F.mse_loss(g_sr, g_hr).item(), rel=1e-5)


def _record_order(monkeypatch, d_i, d_gm):
    """What the G step does, in order: gradient maps ("M"), pixel losses ("pix") and
    discriminator passes ("D_I fake", "D_GM real", ...)."""
    events = []
    m, pix = LS.gradient_map, LS.pixel_loss
    monkeypatch.setattr(LS, "gradient_map", lambda x, **kw: (events.append("M"), m(x, **kw))[1])
    monkeypatch.setattr(LS, "pixel_loss", lambda a, b, **kw: (events.append("pix"), pix(a, b, **kw))[1])
    for name, d in (("D_I", d_i), ("D_GM", d_gm)):
        d.register_forward_pre_hook(lambda mod, args, name=name: events.append(f"{name} {'fake' if args[0].requires_grad else 'real'}"))
    return events


@pytest.mark.parametrize("order", ["default", "official"])
def test_spsr_term_order(monkeypatch, order):
    hr = _hr()
    loss = L.SPSRLoss(feature_extractor=TinyExtractor(), term_order=order)
    assert f"term_order={order!r}" in repr(loss)
    d_i, d_gm = _tiny_d(), _tiny_d()
    events = _record_order(monkeypatch, d_i, d_gm)
    out = _out(hr)
    res = loss(out, hr, d_image=d_i, d_grad=d_gm)
    names = [k for k in res.terms if k != "total"]
    if order == "official":  # as the reference's optimize_parameters
        assert events == ["M", "M", "pix", "pix", "D_I fake", "D_I real", "D_GM fake", "D_GM real"]
        assert names == ["pixel", "perceptual", "gradient_pixel", "branch", "gan", "gradient_gan"]
        total = torch.zeros((), dtype=torch.float32)  # `l_g_total += term`, term by term in float32
        for k in names:
            total = total + torch.tensor(res.terms[k], dtype=torch.float32)
        assert res.total.item() == total.item()
    else:
        assert events == ["pix", "D_I real", "D_I fake", "M", "M", "pix", "D_GM real", "D_GM fake"]
        assert names == ["pixel", "perceptual", "gan", "gradient_pixel", "gradient_gan", "branch"]
    # the same objective either way
    other = L.SPSRLoss(feature_extractor=TinyExtractor(), term_order="default" if order == "official" else "official")
    ref = other(_out(hr), hr, d_image=_tiny_d(), d_grad=_tiny_d())
    assert res.total.item() == pytest.approx(ref.total.item(), rel=1e-6)
    assert L.SPSRLoss.official(perceptual=0.0).term_order == "official"
    with pytest.raises(ValueError, match="term_order"):
        L.SPSRLoss(term_order="reference", perceptual=0.0)


def test_spsr_keep_real_runs_each_discriminator_once_on_hr_with_the_same_gradients(monkeypatch):
    import copy

    hr = _hr()
    loss = L.SPSRLoss(feature_extractor=TinyExtractor())
    d_pair = (_tiny_d(), _tiny_d())
    grads, real_passes = [], []
    for keep in (False, True):
        d_i, d_gm = copy.deepcopy(d_pair)
        events = _record_order(monkeypatch, d_i, d_gm)
        out = _out(hr)
        for d in (d_i, d_gm):  # the trainer freezes the discriminators for the G step
            d.requires_grad_(False)
        res = loss(out, hr, d_image=d_i, d_grad=d_gm, keep_real=keep)
        assert all(p.requires_grad is False for d in (d_i, d_gm) for p in d.parameters())  # restored
        assert (res.real_logits is not None) == keep and (res.real_grad_logits is not None) == keep
        res.total.backward()
        g_sr = out.sr.grad.clone()
        for d in (d_i, d_gm):
            d.requires_grad_(True)
        dres = loss.discriminator_loss(out, hr, d_i, d_gm, sr_grad=res.sr_grad, hr_grad=res.hr_grad,
                                       real_logits=res.real_logits, real_grad_logits=res.real_grad_logits)
        dres.total.backward()
        grads.append((g_sr, dres.terms, {k: p.grad.clone() for d in (d_i, d_gm) for k, p in d.named_parameters()}))
        real_passes.append(sum(e.startswith("D") for e in events))
    assert real_passes == [8, 6]  # per D: fake + real in each step, or the D step's real pass saved
    (sr0, t0, g0), (sr1, t1, g1) = grads
    assert torch.equal(sr0, sr1) and t0 == t1
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k
    with pytest.raises(ValueError, match="keep_real"):
        L.SPSRLoss.official(feature_extractor=TinyExtractor())(_out(hr), hr, _tiny_d(), _tiny_d(), keep_real=True)


def test_spsr_bad_calls():
    hr = _hr()
    loss = L.SPSRLoss(feature_extractor=TinyExtractor())
    with pytest.raises(ValueError, match="d_image"):
        loss(_out(hr), hr)
    with pytest.raises(ValueError, match="d_grad"):
        loss(_out(hr), hr, d_image=_tiny_d())
    with pytest.raises(ValueError, match="shape"):
        loss(_out(hr), hr[:, :, :16], _tiny_d(), _tiny_d())
    with pytest.raises(TypeError):
        loss("sr", hr)
    with pytest.raises(ValueError, match="pixel"):
        L.SPSRLoss(pixel=float("nan"), perceptual=0)


def test_spsr_under_autocast():
    hr = _hr()
    loss = L.SPSRLoss(feature_extractor=TinyExtractor())
    out = _out(hr)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = loss(out, hr, _tiny_d(), _tiny_d())
    assert res.total.dtype == torch.float32 and math.isfinite(res.terms["total"])
    res.total.backward()
    assert out.sr.grad.abs().sum() > 0


def test_losses_registered():
    assert set(L.list_losses()) >= {"pixel", "perceptual", "ragan", "gradient_pixel", "branch", "spsr"}
    assert isinstance(L.create_loss("pixel", criterion="mse"), L.PixelLoss)
    spsr = L.create_loss("spsr", perceptual=0.0)
    assert isinstance(spsr, L.SPSRLoss)
    with pytest.raises(KeyError, match="registered"):
        L.create_loss("nope")
    assert issubclass(L.WeightsNotFoundError, GradguideError)
