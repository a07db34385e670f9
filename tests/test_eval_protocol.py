"""The protocol check (bicubic Set5 x4 = published 28.42 dB / 0.8104), reports, eval CLI."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from gradguide.eval.evaluate import evaluate, find_pairs
from gradguide.eval.report import print_report, rich_tables, write_csv, write_json


def test_set5_bicubic_x4_matches_published(shared_dir):
    rep = evaluate(["bicubic"], [f"{shared_dir}/data/test/Set5"], scale=4, metrics=["PSNR", "SSIM"])
    mean = rep.results["Set5"]["Bicubic"].mean
    assert len(rep.results["Set5"]["Bicubic"].images) == 5
    assert abs(mean["PSNR"] - 28.42) <= 0.01
    assert abs(mean["SSIM"] - 0.8104) <= 0.001
    assert rep.protocol.crop == 4 and "rgb2ycbcr" in rep.protocol.colour_space


class TinySR(torch.nn.Module):
    """conv + PixelShuffle; returns SROutput with the gradient map of the result."""

    def __init__(self, scale=2):
        super().__init__()
        self.scale = scale
        self.body = torch.nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.up = torch.nn.PixelShuffle(scale)

    def forward(self, x):
        from gradguide import SROutput, gradient_map

        sr = self.up(self.body(x)) + torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")
        return SROutput(sr, gradient_map(sr), gradient_map(x))


def _dataset(root, n=3, size=(24, 28), grey_one=True):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = (rng.random((*size, 3)) * 255).astype(np.uint8)
        if grey_one and i == 0:
            Image.fromarray(a[..., 0], mode="L").save(root / f"im{i}.png")
        else:
            Image.fromarray(a).save(root / f"im{i}.png")
    return root


def test_model_and_bicubic_columns_bad_file_and_outputs(tmp_path):
    ds = _dataset(tmp_path / "Tiny")
    (ds / "zz_bad.png").write_bytes(b"not a png")
    model = TinySR(2)
    rep = evaluate({"Bicubic": "bicubic", "Tiny": model}, [ds], metrics=["PSNR", "SSIM", "GMSD", "GradL1", "NIQE"])
    assert rep.methods == ["Bicubic", "Tiny"] and rep.protocol.scale == 2
    r = rep.results["Tiny"]["Tiny"]
    assert [i.name for i in r.images] == ["im0.png", "im1.png", "im2.png", "zz_bad.png"]
    assert r.images[-1].error and "zz_bad.png" in r.images[-1].error
    m = r.mean
    assert m["PSNR"] is not None and m["GMSD"] is not None and m["LPIPS"] is None and m["PI"] is None
    # images smaller than a 96x96 block: NIQE is skipped with a note, not a number
    assert m["NIQE"] is None and any("NIQE skipped" in n for n in r.notes)
    assert rep.results["Tiny"]["Bicubic"].mean["PSNR"] != m["PSNR"]
    tables = rich_tables(rep)
    assert len(tables) == 1 and [c.header for c in tables[0].columns] == ["Dataset", "Metric", "Bicubic", "Tiny"]
    j = json.loads(write_json(rep, tmp_path / "r.json").read_text())
    assert j["protocol"]["crop"] == 2 and j["datasets"]["Tiny"]["Tiny"]["mean"]["LPIPS"] is None
    rows = [r for r in csv.reader(l for l in (write_csv(rep, tmp_path / "r.csv")).read_text().splitlines() if not l.startswith("#"))]
    assert rows[0][:3] == ["dataset", "method", "image"] and any(r[2] == "MEAN" for r in rows)
    assert "# resize_kernel: MATLAB imresize bicubic" in (tmp_path / "r.csv").read_text()


def test_paired_layout(tmp_path):
    from gradguide.data.imresize import imresize

    hr_dir = _dataset(tmp_path / "P" / "HR", n=2, grey_one=False)
    (tmp_path / "P" / "LR" / "X2").mkdir(parents=True)
    for f in sorted(hr_dir.iterdir()):
        lr = imresize(np.asarray(Image.open(f)), 0.5)
        Image.fromarray(lr).save(tmp_path / "P" / "LR" / "X2" / f"{f.stem}x2.png")
    hr, lr_map = find_pairs(tmp_path / "P", 2)
    assert len(hr) == 2 and set(lr_map) == {"im0", "im1"}
    paired = evaluate(["bicubic"], [tmp_path / "P"], scale=2, metrics=["PSNR"]).results["P"]["Bicubic"].mean["PSNR"]
    (tmp_path / "U").mkdir()
    for f in hr:
        (tmp_path / "U" / f.name).write_bytes(f.read_bytes())
    unpaired = evaluate(["bicubic"], [tmp_path / "U"], scale=2, metrics=["PSNR"]).results["U"]["Bicubic"].mean["PSNR"]
    assert paired == pytest.approx(unpaired, abs=1e-9)


def test_eval_cli(tmp_path, capsys):
    from gradguide.cli import main

    ds = _dataset(tmp_path / "D", n=2)
    rc = main(["eval", "bicubic", "--data", str(ds), "--scale", "2", "--metrics", "PSNR,SSIM,LPIPS", "--json", str(tmp_path / "o.json")])
    assert rc == 0
    out = capsys.readouterr()
    assert "PSNR" in out.out and "LPIPS skipped" in out.out.replace("\n", " ")
    assert json.loads((tmp_path / "o.json").read_text())["notes"]
    assert main(["eval", "bicubic", "--data", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["eval", "bicubic", "--data", str(ds), "--metrics", "FOO"]) == 2
