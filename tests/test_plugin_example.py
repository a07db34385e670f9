"""The third-party example plugin (plugins/gradguide-carn, installed by `make install`)
is discovered through its entry point and wrappable with no arguments."""
import importlib.metadata

import pytest
import torch

import gradguide
from gradguide.plugins import registries
from gradguide.wrap import wrap

pytest.importorskip("gradguide_carn", reason="plugins/gradguide-carn is not installed (make install does it)")


def test_entry_point_and_registration():
    eps = {e.name: e.value for e in importlib.metadata.entry_points(group="gradguide")}
    assert eps.get("carn") == "gradguide_carn.plugin"
    regs = registries()
    assert "carn" in regs.backbones and regs.backbones.owner("carn") == "carn"
    assert "carn-official" in regs.layouts
    assert not [p for p in regs.problems if p.plugin == "carn"]


@pytest.mark.parametrize("scale", [2, 4])
def test_carn_wrap_forward_backward_unwrap(scale):
    from gradguide_carn import CARN

    torch.manual_seed(0)
    model = CARN(scale=scale, channels=8).eval()
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        before = model(x)
    for fusion in ("paper", "lr"):
        g = wrap(model, fusion=fusion)
        if fusion == "lr":
            torch.nn.init.normal_(g.fusion.out.weight, std=0.05)
        out = g(x)
        assert out.sr.shape == out.grad.shape == (1, 3, 6 * scale, 7 * scale)
        (out.sr.mean() + out.grad.abs().mean()).backward()
        params = [(n, p) for n, p in g.named_parameters() if p.requires_grad]
        assert all(p.grad is not None for _, p in params)
        assert all(p.grad.abs().sum() > 0 for n, p in params if not n.startswith("backbone."))
        model = g.unwrap().eval()
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            assert torch.equal(model(x), before)


def test_carn_guided_round_trip_and_official_layout(tmp_path):
    from gradguide_carn import CARN

    g = wrap(CARN(scale=2, channels=8)).eval()
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        ref = g(x).sr
    h = gradguide.load(gradguide.save(g, tmp_path / "carn.safetensors"))
    with torch.no_grad():
        assert torch.equal(h(x).sr, ref)
    # the official multi-scale CARN-pytorch layout: MeanShift convs + up2/up3/up4
    plain = CARN(scale=4, channels=8).eval()
    sd = {k.replace("upsample.up.", "upsample.up4."): v for k, v in plain.state_dict().items()}
    sd["upsample.up2.body.0.weight"] = torch.zeros(32, 8, 3, 3)
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):
        sd[f"{name}.shifter.weight"] = torch.eye(3).view(3, 3, 1, 1)
        sd[f"{name}.shifter.bias"] = sign * torch.tensor([0.4488, 0.4371, 0.4040])
    torch.save(sd, tmp_path / "carn_official.pth")
    with pytest.raises(gradguide.errors.CheckpointError, match="pass scale="):
        gradguide.load(tmp_path / "carn_official.pth")
    ck = gradguide.load_checkpoint(tmp_path / "carn_official.pth", scale=4)
    assert ck.report.layout == "carn-official" and "upsample.up2.body.0.weight" in ck.report.ignored
    with torch.no_grad():
        assert torch.equal(ck.model(x), plain(x))
