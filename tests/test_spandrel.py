"""spandrel interop: models spandrel loads from tiny random checkpoints are wrappable
with no spec; gradguide's SwinIR (timm blocks) is spandrel-compatible, key for key."""
import pytest
import torch

from gradguide.wrap import wrap

spandrel = pytest.importorskip("spandrel")


def _load(sd):
    return spandrel.ModelLoader().load_from_state_dict(sd)


def _esrgan_old_sd(nf=8, nb=3, scale=4):
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    return ESRGAN(num_filters=nf, num_blocks=nb, scale=scale).state_dict()


def _check_guided(model, scale, x):
    model.eval()
    with torch.no_grad():
        before = model(x)
    for fusion in ("paper", "lr"):
        g = wrap(model, fusion=fusion)
        out = g(x)
        assert out.sr.shape == out.grad.shape == (1, 3, x.shape[2] * scale, x.shape[3] * scale)
        (out.sr.mean() + out.grad.mean()).backward()
        assert all(p.grad is not None for p in g.parameters() if p.requires_grad)
        model = g.unwrap()
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            assert torch.equal(model(x), before)
    return model


@pytest.mark.parametrize("scale", [2, 4])
def test_spandrel_esrgan(scale):
    desc = _load(_esrgan_old_sd(scale=scale))
    assert desc.architecture.id == "ESRGAN" and desc.scale == scale
    g = wrap(desc.model)  # no spec: the built-in plugin knows spandrel's RRDBNet
    assert g.config["backbone"] == "spandrel-esrgan"
    assert g.spec.replace == "model.10" if scale == 4 else "model.7"
    assert [t.name for t in g.spec.taps] == ["model.1.sub.0", "model.1.sub.1", "model.1.sub.2"]
    g.unwrap()
    _check_guided(desc.model, scale, torch.rand(1, 3, 6, 6))


def test_spandrel_esrgan_matches_gradguide_rrdbnet():
    """The same ESRGAN weights give the same output through spandrel and gradguide's loader."""
    import gradguide

    sd = _esrgan_old_sd(nf=8, nb=2, scale=4)
    ours = gradguide.checkpoints.build_architecture("rrdbnet", dict(nf=8, nb=2, gc=32, scale=4))
    rep = wrap(ours, fusion="lr").load_backbone_state_dict(sd)
    assert rep.layout == "esrgan-old" and rep.ok
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert torch.allclose(ours(x), _load(sd).model.eval()(x), atol=1e-6)


def _official_swinir_sd(model, img_size=16):
    """gradguide SwinIR state dict + the buffers the official code also saves
    (``relative_position_index``; ``attn_mask`` for its training size ``img_size``)."""
    from timm.models.swin_transformer import SwinTransformerBlock

    sd = dict(model.state_dict())
    for name, mod in model.named_modules():
        if isinstance(mod, SwinTransformerBlock):
            sd[f"{name}.attn.relative_position_index"] = mod.attn.relative_position_index.clone()
            if any(mod.shift_size):
                sd[f"{name}.attn_mask"] = mod.get_attn_mask(torch.zeros(1, img_size, img_size, 1))
    return sd


@pytest.mark.parametrize("scale", [2, 4])
def test_gradguide_swinir_loads_in_spandrel_and_back(scale, tmp_path):
    from gradguide_backbones.swinir import SwinIR

    torch.manual_seed(0)
    ours = SwinIR(embed_dim=12, depths=(2, 2), num_heads=(2, 2), window_size=4, num_feat=64, upscale=scale, mlp_ratio=2.0).eval()
    sd = _official_swinir_sd(ours)
    desc = _load(sd)
    assert desc.architecture.id == "SwinIR" and desc.scale == scale
    theirs = desc.model.eval()
    x = torch.rand(1, 3, 9, 10)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    g = wrap(theirs)
    assert g.config["backbone"] == "spandrel-swinir" and g.spec.replace == "conv_last"
    theirs = g.unwrap()
    _check_guided(theirs, scale, x)
    # and back: the official-layout state dict (with its buffers) loads into gradguide's SwinIR
    import gradguide

    torch.save(sd, tmp_path / "swinir.pth")
    ck = gradguide.load_checkpoint(tmp_path / "swinir.pth")
    assert ck.report.layout == "swinir" and ck.report.ok and any(k.endswith("attn_mask") for k in ck.report.ignored)
    with torch.no_grad():
        assert torch.equal(ck.model(x), ours(x))
