import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import gradguide
from gradguide.checkpoints import spsr_to_official
from gradguide.spec import even_taps
from gradguide.types import SROutput


def test_conformance_with_reference_outputs(shared_dir):
    ref = os.path.join(shared_dir, "reference", "spsr_official_nf16")
    model = gradguide.load(ref + ".weights.safetensors")
    io = load_file(ref + ".io.safetensors")
    with torch.no_grad():
        out = model(io["input"])
    assert isinstance(out, SROutput)
    for name, got in (("sr", out.sr), ("grad_branch", out.grad), ("lr_grad", out.lr_grad)):
        err = (got - io[name]).abs().max().item()
        assert err <= 1e-5, f"{name}: max abs error {err}"


def test_official_roundtrip_through_gradguide_format_is_bitwise(shared_dir, tmp_path):
    ref = os.path.join(shared_dir, "reference", "spsr_official_nf16")
    model = gradguide.load(ref + ".weights.safetensors")
    gradguide.save(model, tmp_path / "g.safetensors")
    again = gradguide.load(tmp_path / "g.safetensors")
    x = load_file(ref + ".io.safetensors")["input"]
    with torch.no_grad():
        a, b = model(x), again(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("nf,nb,scale", [(8, 7, 4), (12, 3, 2), (8, 4, 3)])
def test_user_built_official_checkpoint_any_size(tmp_path, nf, nb, scale):
    """A user's official-layout checkpoint of another size loads and reproduces outputs."""
    torch.manual_seed(nf * nb + scale)
    model = gradguide.create_spsr(nf=nf, nb=nb, gc=8, scale=scale).eval()
    path = tmp_path / "official.pth"
    torch.save(spsr_to_official(model), path)
    loaded = gradguide.load(path, scale=3 if scale == 3 else None)
    assert loaded.scale == scale
    x = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_and_every_parameter_gets_a_gradient(scale):
    model = gradguide.create_spsr(nf=4, nb=2, gc=4, scale=scale)
    out = model(torch.rand(2, 3, 6, 5))
    assert out.sr.shape == out.grad.shape == (2, 3, 6 * scale, 5 * scale)
    assert out.lr_grad.shape == (2, 3, 6, 5)
    (out.sr.mean() + out.grad.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_taps_rule():
    assert even_taps(23) == [4, 9, 14, 19]  # after RRDB 5, 10, 15, 20
    assert even_taps(16) == [3, 7, 11, 15]
    assert even_taps(2) == [0, 1]
    m = gradguide.create_spsr(nf=4, nb=23, gc=4)
    assert [t.name for t in m.spec.taps] == ["body.4", "body.9", "body.14", "body.19"]


def test_warmup_modules_are_the_fusion_f_modules():
    m = gradguide.create_spsr(nf=4, nb=2, gc=4)
    mods = m.warmup_modules()
    ids = {id(p) for mod in mods for p in mod.parameters()}
    assert ids == {id(p) for n, p in m.fusion.named_parameters() if not n.startswith("proj.")}


def test_state_dict_has_no_replaced_layer_and_deepcopy_works():
    import copy

    m = gradguide.create_spsr(nf=4, nb=2, gc=4).eval()
    assert not any(k.startswith("backbone.conv_last") for k in m.state_dict())
    c = copy.deepcopy(m)
    with torch.no_grad():
        for p in c.parameters():
            p.add_(0.01)
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert not torch.equal(m(x).sr, c(x).sr)  # the copy runs its own fusion, not the original's
        ref = m(x).sr
        c2 = copy.deepcopy(m)
        assert torch.equal(c2(x).sr, ref)
