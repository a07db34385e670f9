"""bench/device_study.sh in its dry form (CPU, budget quick, gradguide from the source
tree): the study trains without evaluating and hands back tar files that hold the plan,
the logs and one fp16 snapshot per arm, at its stage's common iteration."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from test_ablation import _tiny_data

ROOT = Path(__file__).resolve().parents[1]


def test_device_study_dry_hands_back_tars(tmp_path):
    data, out, work = tmp_path / "data", tmp_path / "out", tmp_path / "work"
    _tiny_data(data)
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_SHIM="1", DEVICE_DRY="1", JOBS="2", WORK=str(work), OMP_NUM_THREADS="1")
    p = subprocess.run(["bash", str(ROOT / "bench/device_study.sh"), str(data), str(out), "--only", "psnr_rrdb", "a_esrgan_s0"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    names = [n for t in sorted(out.glob("study*.tar")) for n in tarfile.open(t).getnames()]
    assert "plan.json" in names and "machine.txt" in names and "logs/train_a_esrgan_s0.log" in names
    assert sorted(n for n in names if n.endswith(".safetensors")) == [
        "runs/a_esrgan_s0/snaps/G_0000002.safetensors", "runs/psnr_rrdb/snaps/G_0000002.safetensors"]
    assert not (work / "eval").exists()  # evaluation is left to the machine the tars go back to
    assert json.loads((work / "plan.json").read_text())["eval_iteration"]["a_esrgan_s0"] == 2
