"""wrap() on a model the registry does not know (a spec naming its modules), unwrap(),
errors, and the cost of the efficient fusion."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradguide
from gradguide.errors import CheckpointError, SpecError
from gradguide.spec import GuidanceSpec, Tap
from gradguide.wrap import GuidedSR, spec_for, unwrap, wrap


class TinySR(nn.Module):
    """An SR network gradguide has never heard of."""

    def __init__(self, c=8, scale=2):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, c, 3, 1, 1)
        self.stage_a = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU())
        self.stage_b = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU())
        self.fuse = nn.Conv2d(c, c, 3, 1, 1)
        self.up = nn.Sequential(nn.Conv2d(c, c * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))
        self.to_rgb = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, x):
        f = self.head(x)
        f = f + self.fuse(self.stage_b(self.stage_a(f)))
        return self.to_rgb(self.up(f)) + F.interpolate(x, scale_factor=self.scale)


def tiny_spec(scale=2, c=8):
    return GuidanceSpec(
        taps=(Tap("stage_a", c), Tap("stage_b", c)), replace="to_rgb", hr_channels=c, scale=scale,
        lr_feature="fuse", lr_channels=c,
    )


def test_unknown_model_needs_a_spec():
    with pytest.raises(SpecError, match=r"no registered backbone covers .*TinySR.*rrdbnet.*pass spec=GuidanceSpec"):
        wrap(TinySR())
    with pytest.raises(SpecError):
        spec_for(TinySR())


@pytest.mark.parametrize("fusion", ["paper", "lr"])
@pytest.mark.parametrize("scale", [2, 4])
def test_unknown_model_with_spec(fusion, scale):
    torch.manual_seed(0)
    m = TinySR(scale=scale).eval()
    names_before = [n for n, _ in m.named_modules()]
    names_sd = list(m.state_dict())
    x = torch.rand(2, 3, 5, 6)
    with torch.no_grad():
        ref = m(x)
    g = wrap(m, tiny_spec(scale), fusion=fusion)
    assert g.config["backbone"] is None and g.config["fusion"] == fusion
    keys = set(g.state_dict())
    expected = {"backbone." + k for k in names_sd if not (fusion == "paper" and k.startswith("to_rgb."))}
    assert {k for k in keys if k.startswith("backbone.")} == expected
    out = g(x)
    assert out.sr.shape == out.grad.shape == (2, 3, 5 * scale, 6 * scale)
    if fusion == "lr":  # zero-initialised output conv: starts as the backbone exactly
        assert torch.equal(out.sr, ref)
    out.sr.sum().backward()
    base = unwrap(g)
    assert base is m and [n for n, _ in m.named_modules()] == names_before
    assert not any(mod._forward_hooks for mod in m.modules())
    with torch.no_grad():
        assert torch.equal(m(x), ref)


def test_spec_errors():
    m = TinySR()
    with pytest.raises(SpecError, match="'stage_c'.*did you mean .*stage_a"):
        wrap(m, GuidanceSpec(taps=(Tap("stage_c", 8),), replace="to_rgb", hr_channels=8, scale=2))
    lr_only = GuidanceSpec(taps=(Tap("stage_a", 8),), replace=None, hr_channels=None, scale=2, lr_feature="fuse", lr_channels=8)
    with pytest.raises(SpecError, match="possible: \\['lr'\\]"):
        wrap(m, lr_only, fusion="paper")
    assert wrap(m, lr_only).config["fusion"] == "lr"  # the default falls back to what the spec allows
    with pytest.raises(SpecError, match="fusion must be one of"):
        wrap(TinySR(), tiny_spec(), fusion="hr")
    with pytest.raises(SpecError, match="unknown block 'dense'"):
        wrap(TinySR(), tiny_spec(), branch_block="dense")
    with pytest.raises(SpecError, match="stride"):
        GuidanceSpec(taps=(Tap("stage_a", 8, stride=2),), replace="to_rgb", hr_channels=8, scale=2)
    g = wrap(TinySR(), tiny_spec())
    with pytest.raises(SpecError, match="already wrapped"):
        wrap(g)
    with pytest.raises(SpecError, match="already wrapped"):
        wrap(g.backbone, tiny_spec())


def test_spec_dict_round_trip():
    s = tiny_spec()
    assert GuidanceSpec.from_dict(s.to_dict()) == s


def test_unregistered_guided_model_save_load(tmp_path):
    g = wrap(TinySR(), tiny_spec(), fusion="lr").eval()
    p = gradguide.save(g, tmp_path / "t.safetensors")
    with pytest.raises(CheckpointError, match="unregistered backbone.*pass model="):
        gradguide.load(p)
    h = wrap(TinySR(), tiny_spec(), fusion="lr")
    gradguide.load(p, model=h)
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(h(x).sr, g(x).sr)


def test_custom_block_factory():
    g = wrap(TinySR(), tiny_spec(), branch_block=lambda c: nn.Conv2d(c, c, 1), fusion="lr")
    assert g.config["branch_block"] == "custom"
    assert g(torch.rand(1, 3, 4, 4)).sr.shape == (1, 3, 8, 8)


def test_paper_wrap_of_rrdbnet_matches_create_spsr_structure():
    """wrap(RRDBNet) with defaults has exactly the SPSR generator's state-dict layout."""
    from gradguide_backbones.rrdb import RRDBNet

    from gradguide.spsr import create_spsr

    g = wrap(RRDBNet(nf=8, nb=4, gc=4, scale=4))
    s = create_spsr(nf=8, nb=4, gc=4, scale=4)
    assert {k: v.shape for k, v in g.state_dict().items()} == {k: v.shape for k, v in s.state_dict().items()}


def test_load_backbone_weights_from_another_layout():
    """ESRGAN-old names are converted on the fly by load_backbone_state_dict."""
    from gradguide_backbones.rrdb import RRDBNet

    from gradguide.checkpoints import spsr_to_official

    torch.manual_seed(1)
    src = gradguide.create_spsr(nf=8, nb=2, gc=4, scale=2)
    official = {k: v for k, v in spsr_to_official(src).items() if k.startswith("model.")}
    # official SPSR trunk lacks the final conv: add one so it reads as an ESRGAN-old RRDBNet
    official["model.8.weight"] = torch.zeros(3, 8, 3, 3)
    official["model.8.bias"] = torch.zeros(3)
    g = wrap(RRDBNet(nf=8, nb=2, gc=4, scale=2), fusion="lr")
    rep = g.load_backbone_state_dict(official)
    assert rep.layout == "esrgan-old" and rep.ok
    assert torch.equal(g.backbone.body[1].rdb2.conv3.weight, src.backbone.body[1].rdb2.conv3.weight)


def test_efficient_fusion_cost_rrdbnet23():
    """The acceptance bound: the 'lr' fusion costs <= 1.35x RRDBNet-23's FLOPs (paper ~2.9x)."""
    from gradguide_backbones.rrdb import RRDBNet

    from gradguide.flops import count_flops

    # FLOPs scale with the LR area; 8x8 keeps this test fast and gives the same ratio
    m = RRDBNet(nf=64, nb=23, scale=4)
    base = count_flops(m, (1, 3, 8, 8))
    lr = count_flops(wrap(m, fusion="lr"), (1, 3, 8, 8))
    assert lr / base <= 1.35, lr / base


# ----------------------------------------------------------------------------- edge_pad


def test_edge_pad_mirrors_the_input_and_crops_every_output(tmp_path):
    from gradguide_backbones.rrdb import RRDBNet

    from gradguide.ops import symmetric_pad

    torch.manual_seed(0)
    plain = wrap(RRDBNet(nf=8, nb=1, gc=4, scale=4), fusion="lr").eval()
    assert "edge_pad" not in plain.config and plain.edge_pad == 0  # earlier checkpoints' configs unchanged
    padded = wrap(RRDBNet(nf=8, nb=1, gc=4, scale=4), fusion="lr", edge_pad=3).eval()
    padded.load_state_dict(plain.state_dict())
    assert padded.config["edge_pad"] == 3
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        got, ref = padded(x), plain(symmetric_pad(x, 3))
        assert got.sr.shape == (2, 3, 36, 44) and got.grad.shape == (2, 3, 36, 44) and got.lr_grad.shape == x.shape
        assert torch.equal(got.sr, ref.sr[..., 12:-12, 12:-12]) and torch.equal(got.grad, ref.grad[..., 12:-12, 12:-12])
        assert torch.equal(got.lr_grad, ref.lr_grad[..., 3:-3, 3:-3])
        assert not torch.equal(got.sr, plain(x).sr)  # the edge sees a mirror, not zeros
        # an input smaller than the pad mirrors all it has
        assert padded(torch.rand(1, 3, 2, 5)).sr.shape == (1, 3, 8, 20)
    # safetensors round trip keeps it
    again = gradguide.load(gradguide.save(padded, tmp_path / "e.safetensors")).eval()
    assert again.edge_pad == 3
    with torch.no_grad():
        assert torch.equal(again(x).sr, got.sr)
    # every parameter still gets a gradient
    padded.train()
    out = padded(x)
    (out.sr.mean() + out.grad.mean()).backward()
    assert all(p.grad is not None for p in padded.parameters())
    with pytest.raises(SpecError, match="edge_pad"):
        wrap(RRDBNet(nf=8, nb=1, gc=4, scale=4), fusion="lr", edge_pad=-1)
