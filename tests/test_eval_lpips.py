"""LPIPS: missing trunk weights (error or skipped with a note), local weights, pnet_rand wiring."""
import pytest
import torch

from gradguide.eval.lpips_metric import LPIPSWeightsMissing, backbone_weights_path, create_lpips, lpips_distance


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    return tmp_path / "th"


def test_missing_weights_clear_error(empty_torch_home):
    with pytest.raises(LPIPSWeightsMissing) as ei:
        create_lpips("alex")
    msg = str(ei.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(empty_torch_home) in msg and "\n" not in msg
    with pytest.raises(LPIPSWeightsMissing, match="nope.pth"):
        backbone_weights_path("vgg", "nope.pth")


def test_missing_weights_skipped_with_note_in_evaluate(empty_torch_home, tmp_path):
    import numpy as np
    from PIL import Image

    from gradguide.eval.evaluate import evaluate

    (tmp_path / "d").mkdir()
    Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype("uint8")).save(tmp_path / "d" / "a.png")
    rep = evaluate(["bicubic"], [tmp_path / "d"], scale=2, metrics=["PSNR", "LPIPS"])
    assert rep.results["d"]["Bicubic"].mean["LPIPS"] is None
    assert any(n.startswith("LPIPS skipped") for n in rep.notes)
    with pytest.raises(LPIPSWeightsMissing):
        evaluate(["bicubic"], [tmp_path / "d"], scale=2, metrics=["LPIPS"], require_lpips=True)
    rnd = evaluate(["bicubic"], [tmp_path / "d"], scale=2, metrics=["LPIPS"], lpips_random_backbone=True)
    assert rnd.results["d"]["Bicubic"].mean["LPIPS"] is not None
    assert any("RANDOM" in n for n in rnd.notes) and "RANDOM" in rnd.protocol.lpips


def test_pnet_rand_wiring():
    torch.manual_seed(0)
    m = create_lpips("alex", random_backbone=True)
    a = torch.rand(2, 3, 32, 32)
    b = (a + 0.2 * torch.randn_like(a)).clamp(0, 1)
    d = lpips_distance(a, b, m)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(lpips_distance(a, a, m), torch.zeros(2, dtype=torch.float64), atol=1e-7)


def test_local_trunk_weights_are_loaded(tmp_path):
    import torchvision

    tv = torchvision.models.alexnet()
    torch.nn.init.constant_(tv.features[3].weight, 0.0123)
    torch.save(tv.state_dict(), tmp_path / "alex.pth")
    m = create_lpips("alex", weights=tmp_path / "alex.pth")
    assert torch.equal(getattr(m.net.slice2, "3").weight, tv.features[3].weight)
    assert torch.equal(getattr(m.net.slice1, "0").weight, tv.features[0].weight)
    torch.save({"junk": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(LPIPSWeightsMissing, match="bad.pth"):
        create_lpips("alex", weights=tmp_path / "bad.pth")
