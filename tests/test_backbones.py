"""Every built-in backbone: wrap() with no arguments, both fusions, x2 and x4; forward,
backward (every trainable parameter gets a non-zero gradient), unwrap() bitwise,
safetensors round trip of the guided model, and its public checkpoint layout."""
import copy

import pytest
import torch

import gradguide
from gradguide.wrap import GuidedSR, wrap

TINY = {
    "rrdbnet": lambda s: dict(nf=8, nb=2, gc=4, scale=s),
    "srresnet": lambda s: dict(num_feat=8, num_block=2, upscale=s),
    "edsr": lambda s: dict(num_feat=8, num_block=2, upscale=s),
    "rcan": lambda s: dict(num_feat=8, num_group=2, num_block=1, squeeze_factor=4, upscale=s),
    "swinir": lambda s: dict(embed_dim=12, depths=(2, 2), num_heads=(2, 2), window_size=4, num_feat=8, upscale=s, mlp_ratio=1.0),
}


def _build(name, scale):
    from gradguide.plugins import registries

    torch.manual_seed(0)
    return registries().backbones.get(name).factory(**TINY[name](scale))


def _perturb_zero_init(g: GuidedSR) -> None:
    """LRFusion's output conv starts at zero (so the wrapped model starts as the backbone);
    give it weights so gradients reach the fusion and branch internals."""
    out = getattr(g.fusion, "out", None)
    if out is not None:
        with torch.no_grad():
            out.weight.normal_(0, 0.05)
            out.bias.normal_(0, 0.05)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", sorted(TINY))
def test_wrap_without_arguments(name, scale):
    model = _build(name, scale)
    model.eval()
    x = torch.rand(1, 3, 10, 11)  # not a multiple of SwinIR's window: exercises padding
    with torch.no_grad():
        before = model(x)
    assert before.shape == (1, 3, 10 * scale, 11 * scale)
    for fusion in ("paper", "lr"):
        g = wrap(model, fusion=fusion)
        assert g.config["backbone"] == name
        _perturb_zero_init(g)
        g.train()
        out = g(x)
        assert out.sr.shape == (1, 3, 10 * scale, 11 * scale)
        assert out.grad.shape == (1, 3, 10 * scale, 11 * scale)
        assert out.lr_grad.shape == x.shape
        (out.sr.mean() + out.grad.abs().mean()).backward()
        params = [(n, p) for n, p in g.named_parameters() if p.requires_grad]
        assert not [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
        # the parts wrap() adds must all be wired in (backbone ReLUs may legitimately be dead)
        assert not [n for n, p in params if not n.startswith("backbone.") and not p.grad.abs().sum() > 0]
        model = g.unwrap()
        model.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            after = model(x)
        assert torch.equal(before, after), fusion


@pytest.mark.parametrize("name", sorted(TINY))
def test_guided_safetensors_round_trip(name, tmp_path):
    g = wrap(_build(name, 2), fusion="lr")
    _perturb_zero_init(g)
    g.eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        ref = g(x)
    path = gradguide.save(g, tmp_path / "g.safetensors")
    h = gradguide.load(path)
    assert isinstance(h, GuidedSR) and h.config == g.config
    with torch.no_grad():
        got = h(x)
    assert torch.equal(ref.sr, got.sr) and torch.equal(ref.grad, got.grad)


def test_paper_fusion_round_trip_and_backbone_weights(tmp_path):
    """Pretrained backbone weights load into a paper-wrapped model: the replaced layer's
    keys are reported as ignored, the rest loads; save -> load is bitwise."""
    src = _build("edsr", 4)
    sd = src.state_dict()
    g = wrap(_build("edsr", 4).requires_grad_(True))
    with torch.no_grad():
        for p in g.backbone.parameters():
            p.zero_()
    rep = g.load_backbone_state_dict(sd)
    assert rep.ok and set(rep.ignored) == {"conv_last.weight", "conv_last.bias"}
    assert torch.equal(g.backbone.conv_first.weight, src.conv_first.weight)
    with pytest.raises(gradguide.errors.CheckpointError, match="missing: body.0.conv1.weight"):
        g.load_backbone_state_dict({k: v for k, v in sd.items() if k != "body.0.conv1.weight"})
    g.eval()
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        ref = g(x).sr
    h = gradguide.load(gradguide.save(g, tmp_path / "p.safetensors"))
    with torch.no_grad():
        assert torch.equal(h(x).sr, ref)


def _official_edsr(sd):
    """BasicSR EDSR names -> EDSR-PyTorch names (the inverse of the edsr-official layout)."""
    import re

    nb = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    out = {}
    for k, v in sd.items():
        k2 = (k.replace("conv_first.", "head.0.").replace("conv_after_body.", f"body.{nb}.")
              .replace("conv_last.", "tail.1."))
        k2 = re.sub(r"^upsample\.(\d+)\.", r"tail.0.\1.", k2)
        k2 = re.sub(r"^body\.(\d+)\.conv1\.", r"body.\1.body.0.", k2)
        k2 = re.sub(r"^body\.(\d+)\.conv2\.", r"body.\1.body.2.", k2)
        out[k2] = v
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):
        out[f"{name}.weight"] = torch.eye(3).view(3, 3, 1, 1)
        out[f"{name}.bias"] = sign * 255 * torch.tensor([0.4488, 0.4371, 0.4040])
    return out


@pytest.mark.parametrize(
    "name, layout, convert",
    [
        ("srresnet", "basicsr-msrresnet", None),
        ("edsr", "basicsr-edsr", None),
        ("edsr", "edsr-official", _official_edsr),
        ("rcan", "basicsr-rcan", None),
        ("swinir", "swinir", None),
        ("rrdbnet", "basicsr-rrdbnet", None),
    ],
)
def test_public_checkpoint_layouts(name, layout, convert, tmp_path):
    from gradguide.checkpoints import load_checkpoint

    model = _build(name, 4).eval()
    sd = model.state_dict()
    if convert:
        sd = convert(sd)
    torch.save(sd, tmp_path / "w.pth")
    ck = load_checkpoint(tmp_path / "w.pth", strict=False)
    assert ck.report.layout == layout
    assert ck.report.ok, ck.report.summary()
    assert type(ck.model) is type(model)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(ck.model(x), model(x))
    # a key mismatch is reported, not dropped silently
    sd2 = dict(sd)
    sd2[next(k for k in sd2 if k.endswith("weight") and "mean" not in k) .replace("weight", "extra")] = torch.zeros(1)
    torch.save(sd2, tmp_path / "w2.pth")
    try:
        rep = load_checkpoint(tmp_path / "w2.pth", strict=False).report
    except gradguide.errors.CheckpointError:
        return  # the converter refuses unknown keys outright
    assert rep.unexpected


def test_official_rcan_layout(tmp_path):
    import re

    from gradguide.checkpoints import load_checkpoint

    model = _build("rcan", 2).eval()
    sd = model.state_dict()
    ng, nb = model.num_group, model.num_block
    out = {}
    for k, v in sd.items():
        k2 = k.replace("conv_first.", "head.0.").replace("conv_after_body.", f"body.{ng}.").replace("conv_last.", "tail.1.")
        k2 = re.sub(r"^upsample\.(\d+)\.", r"tail.0.\1.", k2)
        k2 = re.sub(r"^body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.1\.", r"body.\1.body.\2.body.3.conv_du.0.", k2)
        k2 = re.sub(r"^body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.3\.", r"body.\1.body.\2.body.3.conv_du.2.", k2)
        k2 = re.sub(r"^body\.(\d+)\.residual_group\.(\d+)\.rcab\.(\d)\.", r"body.\1.body.\2.body.\3.", k2)
        k2 = re.sub(r"^body\.(\d+)\.conv\.", rf"body.\1.body.{nb}.", k2)
        out[k2] = v
    torch.save(out, tmp_path / "rcan.pth")
    ck = load_checkpoint(tmp_path / "rcan.pth")
    assert ck.report.layout == "rcan-official" and ck.model.upscale == 2
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(ck.model(x), model(x))
