"""Exact resume: a deterministic CPU run killed with SIGKILL (here: in the middle of
writing a checkpoint, after more iterations than the last good one) and resumed with
``gradguide train ... --resume`` ends bitwise equal to an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gradguide.train.state import load_state_file

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

ITERS = 7
# Kill on the 2nd state write (iteration 4): half a temp file is on disk, the process dies
# hard, the last good state is iteration 2, and iterations 3-4 must be redone identically.
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import gradguide.train.state as S

    real = S.atomic_write_bytes
    calls = [0]

    def killing(path, write):
        if path.name == "state.pt":
            calls[0] += 1
            if calls[0] == int(os.environ["KILL_AT_WRITE"]):
                def half(f):
                    import io
                    buf = io.BytesIO()
                    write(buf)
                    data = buf.getvalue()
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(path, half)
        return real(path, write)

    S.atomic_write_bytes = killing
    from gradguide.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _images(folder, n=5, size=40, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.integers(0, 255, (size // 4, size // 4, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.BICUBIC)
        img.save(folder / f"img{i}.png")
    return folder


def _cmd(data, val, out, *extra):
    return [
        "train", "quickstart",
        "--data-hr", str(data), "--val-hr", str(val), "--out", str(out), "--deterministic", "--device", "cpu",
        "--set", "model.guidance=paper", "--set", "model.backbone_config.nf=4", "--set", "model.backbone_config.nb=2",
        "--set", "model.backbone_config.gc=4",
        "--set", "model.scale=2", "--set", "data.crop=32",
        "--set", f"train.iterations={ITERS}", "--set", "train.batch_size=2", "--set", "train.checkpoint_every=2",
        "--set", "train.warmup_iters=3", "--set", "train.ema=0.9",
        "--set", "optim.lr_g=1e-3", "--set", "optim.milestones=[5]",
        "--set", "loss.gan=0.005", "--set", "loss.gradient_gan=0.005", "--set", "loss.discriminator_nf=4",
        "--set", "loss.gradient_discriminator=unet_sn",
        "--set", "val.every=3", "--set", "log.tensorboard=false", "--set", "log.progress=false",
        *extra,
    ]  # fmt: skip


def _start(args, tmp_path, kill_at_write=0):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KILL_AT_WRITE": str(kill_at_write), "OMP_NUM_THREADS": "1"}
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen([sys.executable, str(driver), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _run(args, tmp_path, kill_at_write=0):
    return _finish(_start(args, tmp_path, kill_at_write))


def test_sigkill_and_resume_is_bitwise_equal(tmp_path):
    data, val = _images(tmp_path / "hr"), _images(tmp_path / "val", n=2, size=24, seed=1)
    full, cut = tmp_path / "full", tmp_path / "cut"

    # the reference and the run to be killed go side by side (one thread each)
    ref_proc = _start(_cmd(data, val, full), tmp_path)
    killed = _run(_cmd(data, val, cut), tmp_path, kill_at_write=2)
    ref = _finish(ref_proc)
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert any(p.name.startswith(".state.pt.") for p in cut.iterdir()), "the interrupted write left its temp file"
    assert load_state_file(cut / "state.pt")["iteration"] == 2  # the last good state survived

    resumed = _run(_cmd(data, val, cut, "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    assert not any(p.name.startswith(".state.pt.") for p in cut.iterdir())

    for name in ("G_latest.safetensors", "G_ema_latest.safetensors", "G_best.safetensors"):
        a, b = load_file(full / name), load_file(cut / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}:{k} differs after resume"
    sa, sb = load_state_file(full / "state.pt"), load_state_file(cut / "state.pt")
    assert sa["iteration"] == sb["iteration"] == ITERS
    for net in ("D_I", "D_GM"):
        for k in sa[net]:
            assert torch.equal(sa[net][k], sb[net][k]), f"{net}:{k} differs after resume"
    for opt in ("G", "D_I", "D_GM"):
        for pid, st in sa["optimizers"][opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, sb["optimizers"][opt]["state"][pid][k]), f"optimizer {opt} {pid}.{k}"
    assert sa["schedulers"] == sb["schedulers"] and sa["sampler"] == sb["sampler"] and sa["best"] == sb["best"]
    # the run really did something: weights moved from their initialisation
    assert sa["best"] is not None and sa["schedulers"]["G"]["last_epoch"] == ITERS
