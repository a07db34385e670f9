"""bench/ablation.py in its quick form: a GAN arm and a guided GAN arm start from the PSNR
stage's common snapshot, every arm is evaluated at its stage's common iteration, exported
as fp16 safetensors that load, and the report keeps other scripts' sections."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gradguide

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import ablation as A  # noqa: E402


def _tiny_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for sub, n, size in (("train/SunHays80", 3, 96), ("test/Set5", 2, 48)):
        d = root / sub
        d.mkdir(parents=True)
        for i in range(n):
            y, x = np.mgrid[0:size, 0:size]
            img = np.stack([(x * 3 + i * 20) % 256, (y * 5) % 256, ((x + y) * 2) % 256], -1) + rng.integers(0, 30, (size, size, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"img{i}.png")


def test_quick_study_end_to_end(tmp_path, monkeypatch):
    data, work, exp, docs = tmp_path / "data", tmp_path / "work", tmp_path / "exp", tmp_path / "docs"
    _tiny_data(data)
    monkeypatch.setattr(A, "matched_depth", lambda shape=(1, 3, 32, 32): 7)  # FLOP counting is tested elsewhere
    A.main(["run", "--budget", "quick", "--jobs", "0", "--work", str(work), "--data-root", str(data), "--export-dir", str(exp),
            "--only", "psnr_rrdb", "a_esrgan_s0", "e_spsr_lr_s0"])
    plan = json.loads((work / "plan.json").read_text())
    # every GAN arm got the --gan-pixel weight (default: 1.0 standing in for L_Per), recorded in the plan
    assert plan["gan_pixel"] == A.GAN_PIXEL == 1.0
    assert all(a["loss"]["pixel"] == 1.0 for a in plan["arms"] if a["stage"] == "gan")
    with pytest.raises(SystemExit, match="gan-pixel"):  # trained GAN arms keep their weight on resume
        A.main(["run", "--budget", "quick", "--jobs", "0", "--work", str(work), "--data-root", str(data), "--no-export",
                "--only", "psnr_rrdb", "a_esrgan_s0", "e_spsr_lr_s0", "--gan-pixel", "0.01"])
    assert plan["init_iteration"]["psnr_rrdb"] == 2 and plan["eval_iteration"]["e_spsr_lr_s0"] == 2
    for name in ("psnr_rrdb", "a_esrgan_s0", "e_spsr_lr_s0", "bicubic"):
        ev = json.loads((work / "eval" / f"{name}.json").read_text())
        assert np.isfinite(ev["datasets"]["Set5"][name]["mean"]["PSNR"])
    # the validation curve is the trainer's own validation (val.colour), one row per round
    rows = A.read_curve(work / "runs" / "psnr_rrdb" / "curve.jsonl")
    assert rows and rows[-1]["iteration"] == 2 and len(rows[-1]["bias_rgb"]) == 3
    assert np.isfinite(rows[-1]["ciede2000"]) and rows[-1]["psnr_rgb"] > 0
    m = gradguide.load(exp / "e_spsr_lr_s0.safetensors")  # fp16 storage loads like any checkpoint
    assert m.scale == 4
    docs.mkdir()
    (docs / "results.md").write_text("<!-- other:begin -->\nkept\n<!-- other:end -->\n")
    A.main(["report", "--work", str(work), "--docs", str(docs)])
    text = (docs / "results.md").read_text()
    assert "(e) SPSR, lr fusion" in text and "kept" in text and "<!-- ablation:begin -->" in text
    assert json.loads((docs / "results.json").read_text())["arms"]["e_spsr_lr_s0"]["iteration"] == 2
    assert "Deviation from Eq. 10: the pixel weight is 1 instead of 0.01" in text
    # a second run's report goes into its own section after the study's, with its own JSON
    A.main(["report", "--work", str(work), "--docs", str(docs), "--section", "second-run"])
    A.main(["report", "--work", str(work), "--docs", str(docs)])  # the study's section is replaced in place
    text = (docs / "results.md").read_text()
    assert text.index("<!-- ablation:begin -->") < text.index("<!-- second-run:begin -->")
    assert text.count("<!-- ablation:begin -->") == 1 and text.count("<!-- second-run:begin -->") == 1 and "kept" in text
    assert (docs / "results-second-run.json").is_file() and "--section second-run" in text
    # the study's section lists the file's other sections, with their titles
    main = text[text.index("<!-- ablation:begin -->"):text.index("<!-- ablation:end -->")]
    assert "- `second-run`: Results of another run: budget `quick` on CPU" in main and "- `ablation`" not in main


def test_gan_pilot_quick_records_and_reports(tmp_path):
    """bench/gan_pilot.py: a GAN stage from a trained generator, its Set5 colour curve
    recorded (settings, curve) and written into docs/results.md beside other sections."""
    import gan_pilot

    data, rec, docs = tmp_path / "data", tmp_path / "rec", tmp_path / "docs"
    _tiny_data(data)
    torch_threads = ["--device", "cpu"]
    gan_pilot.main(["--budget", "quick", "--iters", "2", "--val-every", "1", "--pixel", "1.0", "--set", "train.ema=0.9",
                    "--out", str(tmp_path / "run"), "--data-root", str(data), "--cache-dir", str(tmp_path / "cache"),
                    "--record-dir", str(rec), *torch_threads])
    r = json.loads((rec / "pixel_1.json").read_text())
    assert [row["iteration"] for row in r["curve"]] == [0, 1, 2]  # the start, then every validation
    assert r["pixel"] == 1.0 and r["ema"] == 0.9 and r["loss"]["gan"] == A.SPSR["gan"] and r["seconds"] > 0
    docs.mkdir()
    (docs / "results.md").write_text("<!-- ablation:begin -->\nkept\n<!-- ablation:end -->\n")
    gan_pilot.main(["--report", "--record-dir", str(rec), "--docs", str(docs)])
    gan_pilot.main(["--report", "--record-dir", str(rec), "--docs", str(docs)])  # replaces its section, once
    text = (docs / "results.md").read_text()
    assert "kept" in text and text.count("<!-- gan-pilot:begin -->") == 1 and "| 2 |" in text


def test_train_there_pack_evaluate_here(tmp_path, monkeypatch):
    """A machine lent for training runs ``run --no-eval`` and ``pack``; the tar files, unpacked
    elsewhere, are evaluated by ``run --eval-only`` at the stage's common iteration."""
    import tarfile

    data, work, here, exp, tars = (tmp_path / n for n in ("data", "work", "here", "exp", "tars"))
    _tiny_data(data)
    monkeypatch.setattr(A, "matched_depth", lambda shape=(1, 3, 32, 32): 7)
    only = ["--only", "psnr_rrdb", "a_esrgan_s0"]
    A.main(["run", "--budget", "quick", "--jobs", "0", "--work", str(work), "--data-root", str(data), "--no-eval", *only])
    assert not (work / "eval").exists() and A.snapshots(work, "a_esrgan_s0")
    written = A.pack(work, tars, chunk_bytes=100_000)  # small chunks: the snapshots spread over several files
    assert len(written) > 1 and all(p.stat().st_size <= 100_000 + 20_000 or len(tarfile.open(p).getnames()) == 1 for p in written)
    for p in written:
        with tarfile.open(p) as t:
            t.extractall(here, filter="data")
    kept = A.snapshots(here, "a_esrgan_s0")
    assert list(kept) == [2] and not (here / "cache").exists()  # one snapshot per arm: the compared one
    from safetensors import safe_open

    with safe_open(str(kept[2]), "pt") as fh:
        assert fh.metadata()["storage"] == "fp16" and fh.metadata()["iteration"] == "2"
    A.main(["run", "--budget", "quick", "--jobs", "0", "--work", str(here), "--data-root", str(data), "--export-dir", str(exp),
            "--eval-only", *only])
    assert not (here / "cache").exists()  # nothing trained, no training set decoded
    for name in ("psnr_rrdb", "a_esrgan_s0", "bicubic"):
        ev = json.loads((here / "eval" / f"{name}.json").read_text())
        assert ev["iteration"] == (0 if name == "bicubic" else 2)
    assert gradguide.load(exp / "a_esrgan_s0.safetensors").scale == 4
