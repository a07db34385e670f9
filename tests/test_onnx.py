"""ONNX export: dynamic height/width, onnxruntime parity, SR-only unless asked for grad."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

import gradguide
from gradguide.infer.onnx_export import export_onnx


class TinySR(torch.nn.Module):
    def __init__(self, scale=2):
        super().__init__()
        self.scale = scale
        self.c = torch.nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.up = torch.nn.PixelShuffle(scale)

    def forward(self, x):
        sr = self.up(self.c(x))
        return gradguide.SROutput(sr, gradguide.gradient_map(sr), None)


def test_export_tiny_parity_and_dynamic_shapes(tmp_path):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    m = TinySR(2).eval()
    rep = export_onnx(m, tmp_path / "m.onnx", trace_size=16, check_size=(20, 27))
    assert rep.outputs == ("sr",) and rep.max_abs_error["sr"] < 1e-5
    g = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [o.name for o in g.output] == ["sr"]
    dims = [d.dim_param or d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    assert dims[2] == "height" and dims[3] == "width"
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for h, w in ((8, 8), (13, 31)):
        x = torch.rand(2, 3, h, w)
        y = sess.run(None, {"lr": x.numpy()})[0]
        with torch.no_grad():
            assert np.abs(y - m(x).sr.numpy()).max() < 1e-5


def test_export_with_grad(tmp_path):
    import onnx

    m = TinySR(2).eval()
    rep = export_onnx(m, tmp_path / "g.onnx", with_grad=True, trace_size=12, check_size=(10, 14))
    assert rep.outputs == ("sr", "grad") and set(rep.max_abs_error) == {"sr", "grad"}
    assert rep.max_abs_error["grad"] < 1e-5
    assert [o.name for o in onnx.load(str(tmp_path / "g.onnx")).graph.output] == ["sr", "grad"]


def test_export_cli_spsr(tmp_path, capsys):
    from gradguide.cli import main

    torch.manual_seed(0)
    ck = gradguide.save(gradguide.create_spsr(nf=8, nb=1, gc=8, scale=2), tmp_path / "s.safetensors")
    assert main(["export", str(ck), str(tmp_path / "s.onnx")]) == 0
    out = capsys.readouterr().out
    assert "max abs error" in out
    err = float(out.split("max abs error")[1].split()[0])
    assert err < 1e-4
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
    from gradguide.infer.tiling import InferenceError

    with pytest.raises(InferenceError, match="no gradient map"):
        export_onnx(plain, tmp_path / "p.onnx", with_grad=True)
