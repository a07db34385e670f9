"""bench/gpu_check.sh --dry: every item of the GPU check runs on CPU with tiny sizes."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_runs_every_item(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_SHIM="1", OMP_NUM_THREADS="1")
    p = subprocess.run(["bash", str(ROOT / "bench/gpu_check.sh"), "--dry", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    items = summary["items"]
    expected = {"train_step fp32", "train_step bf16", "train_step bf16+channels_last", "inference", "upscale", "eval", "loader", "train"}
    assert set(items) == expected
    assert all(v["status"] == "ok" for v in items.values()), items
    # each bench wrote its figures, and the table names every item
    for f in ("train_step_fp32.json", "inference.json", "upscale.json", "eval.json"):
        assert json.loads((tmp_path / f).read_text())
    table = (tmp_path / "summary.txt").read_text()
    assert "train_step bf16+compile" in table and "skipped (dry" in table
    assert items["train"]["data"]["iterations"] >= 4
    assert summary["items"]["eval"]["data"]["sets"]  # old vs new, values checked inside the bench
