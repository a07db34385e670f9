"""Issue 9, training side: each numbered failure reproduced, and now handled.

8 stale temp files never cleaned; a truncated state.pt with no fallback; nan/0 passing
recipe validation; resumed .safetensors not byte-identical. 9 Ctrl-C and SIGTERM losing
up to checkpoint_every iterations; no resume command; --resume needing every flag again;
"done: 400 iterations" for a resumed run that did 250.
"""
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

from gradguide.errors import CheckpointError, RecipeError
from gradguide.train.recipe import apply_overrides, recipe_from_dict
from gradguide.train.state import atomic_torch_save, load_state_file, previous_path
from gradguide.train.trainer import STATE_FILE, Trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyDS(torch.utils.data.Dataset):
    def __init__(self, n=4, crop=16, scale=2):
        self.n, self.crop, self.scale, self.epoch = n, crop, scale, 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        hr = torch.rand(3, self.crop, self.crop, generator=g)
        return torch.nn.functional.avg_pool2d(hr[None], self.scale)[0], hr


def tiny_recipe(**sections):
    base = {
        "model": {"backbone": "rrdbnet", "guidance": "paper", "backbone_config": {"nf": 4, "nb": 1, "gc": 4}, "scale": 2},
        "data": {"crop": 16},
        "train": {"iterations": 4, "batch_size": 2, "checkpoint_every": 1000, "deterministic": True, "ema": 0.9},
        "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
        "loss": {"perceptual": 0.0, "gan": 0.0, "gradient_gan": 0.0, "discriminator_nf": 4},
        "val": {"every": 0},
        "log": {"progress": False, "tensorboard": False, "every": 1000},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return recipe_from_dict(base, "tiny.toml").validate()


def _bytes(folder, names=("G_latest.safetensors", "G_ema_latest.safetensors")):
    return {n: (folder / n).read_bytes() for n in names}


# 9. interrupted training -----------------------------------------------------------
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_saves_at_the_next_step_and_resume_is_byte_identical(tmp_path, sig):
    full, cut = tmp_path / "full", tmp_path / "cut"
    ref = train(tiny_recipe(), full, train_dataset=TinyDS())
    assert ref.iteration == 4 and ref.stopped is None

    def send(tr):
        if tr.iteration == 2:
            os.kill(os.getpid(), getattr(signal, sig))

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    res = train(tiny_recipe(), cut, train_dataset=TinyDS(), callbacks=[send])
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored
    # checkpoint_every is 1000: without the signal handling nothing would be saved
    assert res.stopped == sig and res.iteration == 2 and res.saved_iteration == 2
    assert load_state_file(cut / STATE_FILE)["iteration"] == 2
    res2 = train(tiny_recipe(), cut, resume=True, train_dataset=TinyDS())
    assert res2.start_iteration == 2 and res2.iteration == 4
    assert _bytes(full) == _bytes(cut)  # weights and metadata, byte for byte


def test_safetensors_bytes_do_not_depend_on_the_process(tmp_path):
    import gradguide

    torch.manual_seed(0)
    net = gradguide.create_spsr(nf=4, nb=1, gc=4, scale=2)
    meta = {f"k{i}": str(i) for i in range(12)}
    blobs = {gradguide.save(net, tmp_path / f"{i}.safetensors", metadata=meta).read_bytes() for i in range(4)}
    code = (
        "import sys, torch, gradguide; torch.manual_seed(0); "
        "net = gradguide.create_spsr(nf=4, nb=1, gc=4, scale=2); "
        "gradguide.save(net, sys.argv[1], metadata={f'k{i}': str(i) for i in range(12)})"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "sub.safetensors")], check=True, env={**os.environ, "PYTHONHASHSEED": "7"})
    blobs.add((tmp_path / "sub.safetensors").read_bytes())
    assert len(blobs) == 1
    assert gradguide.load(tmp_path / "0.safetensors") is not None


# 8. training state -----------------------------------------------------------------
def test_truncated_state_falls_back_to_the_previous_one_and_says_so(tmp_path, capsys):
    from rich.console import Console

    r = tiny_recipe(train={"iterations": 2, "checkpoint_every": 1})
    train(r, tmp_path, train_dataset=TinyDS())
    prev = previous_path(tmp_path / STATE_FILE)
    assert load_state_file(prev)["iteration"] == 1 and load_state_file(tmp_path / STATE_FILE)["iteration"] == 2
    data = (tmp_path / STATE_FILE).read_bytes()
    (tmp_path / STATE_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_state_file(tmp_path / STATE_FILE)
    r3 = tiny_recipe(train={"iterations": 3, "checkpoint_every": 1})
    res = train(r3, tmp_path, resume=True, train_dataset=TinyDS(), console=Console(stderr=True, soft_wrap=True))
    err = capsys.readouterr().err
    assert "state.pt: cannot load training state" in err and "using the previous state" in err and "(iteration 1)" in err
    assert res.start_iteration == 1 and res.iteration == 3
    # the truncated file was not kept as the new fallback
    assert load_state_file(prev)["iteration"] == 2


def test_no_state_but_a_previous_one_still_resumes(tmp_path):
    train(tiny_recipe(train={"iterations": 2, "checkpoint_every": 1}), tmp_path, train_dataset=TinyDS())
    (tmp_path / STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match="exists: pass --resume"):
        Trainer(tiny_recipe(), tmp_path, train_dataset=TinyDS())
    res = train(tiny_recipe(train={"iterations": 2}), tmp_path, resume=True, train_dataset=TinyDS())
    assert res.start_iteration == 1


def test_stale_temp_files_are_cleaned_at_start(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stale = [
        tmp_path / ".state.pt.abc123.tmp",
        tmp_path / ".G_latest.safetensors.k2j4.tmp",
        tmp_path / "G_latest.safetensors.x8y9.tmp",  # the naming of older versions
    ]
    for f in stale:
        f.write_bytes(b"half a file")
    (tmp_path / "notes.tmp").write_text("mine")  # not ours: kept
    train(tiny_recipe(train={"iterations": 1}), tmp_path, train_dataset=TinyDS())
    assert not any(f.exists() for f in stale)
    assert (tmp_path / "notes.tmp").read_text() == "mine"


def test_atomic_state_writes_keep_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_torch_save({"v": torch.zeros(1)}, tmp_path / "s.pt")
    finally:
        os.umask(old)
    assert os.stat(p).st_mode & 0o777 == 0o644


# 8. recipe validation --------------------------------------------------------------
@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr_g=nan", "optim.lr_g"),
        ("optim.lr_d=inf", "optim.lr_d"),
        ("loss.pixel=nan", "loss.pixel"),
        ("train.ema=nan", "train.ema"),
        ("train.time_limit_s=inf", "train.time_limit_s"),
        ("model.backbone_config.nf=0", "model.backbone_config.nf"),
        ("model.backbone_config.nb=-2", "model.backbone_config.nb"),
        ("optim.betas=[0.9, 1.0]", "optim.betas[1]"),
        ("optim.betas=[-0.1, 0.9]", "optim.betas[0]"),
        ("optim.eps=0", "optim.eps"),
        ("optim.gamma=0", "optim.gamma"),
        ("optim.gamma=2", "optim.gamma"),
        ("optim.weight_decay_g=-1e-4", "optim.weight_decay_g"),
        ("optim.lr_g=5", "optim.lr_g"),
        ("loss.discriminator_nf=0", "loss.discriminator_nf"),
        ("log.every=0", "log.every"),
        ("val.max_images=-1", "val.max_images"),
    ],
)
def test_recipe_refuses_non_finite_and_out_of_range_values(override, key):
    with pytest.raises(RecipeError) as ei:
        apply_overrides(tiny_recipe(), [override])
    msg = str(ei.value)
    assert f" {key} " in msg and "\n" not in msg


def test_recipe_still_accepts_sane_values():
    r = apply_overrides(tiny_recipe(), ["optim.betas=[0, 0.99]", "optim.gamma=1", "model.backbone_config.nf=8"])
    assert r.optim.gamma == 1.0


# 9. the CLI: one line with the resume command; --resume RUN_DIR; "done" counts this run
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from gradguide.train import trainer as T

    real = T.Trainer.train_step
    at, sig = int(os.environ.get("SIGNAL_AT", "0")), os.environ.get("SIGNAL", "SIGINT")

    def step(self, lr, hr):
        if self.iteration + 1 == at:  # during this step: handled at its end
            os.kill(os.getpid(), getattr(signal, sig))
        return real(self, lr, hr)

    T.Trainer.train_step = step
    from gradguide.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _images(folder, n=4, size=32):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"i{i}.png")
    return folder


def _cli(tmp_path, args, cwd, **env):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    e = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, str(driver), *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=300)


def test_cli_ctrl_c_prints_the_resume_command_and_resume_needs_only_the_folder(tmp_path):
    data = _images(tmp_path / "hr")
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    args = [
        "train", "quickstart", "--data-hr", "../hr", "--out", "run", "--device", "cpu", "--deterministic",
        "--set", "model.backbone_config.nf=4", "--set", "model.backbone_config.nb=1", "--set", "model.backbone_config.gc=4",
        "--set", "model.scale=2",
        "--set", "data.crop=16", "--set", "train.iterations=6", "--set", "train.batch_size=2",
        "--set", "train.checkpoint_every=1000", "--set", "train.time_limit_s=0", "--set", "val.every=0",
        "--set", "log.tensorboard=false", "--set", "log.progress=false", "--set", "loss.perceptual=0",
    ]  # fmt: skip
    cut = _cli(tmp_path, args, work, SIGNAL_AT="2", SIGNAL="SIGINT")
    assert cut.returncode == 130, cut.stderr[-3000:]
    run = work / "run"
    last = cut.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted by SIGINT after 2 iterations: saved")
    assert last.endswith(f"resume with: gradguide train --resume {run}")
    assert load_state_file(run / STATE_FILE)["iteration"] == 2

    # from another folder, with nothing but the run folder: recipe, overrides and data paths are recorded
    resumed = _cli(tmp_path, ["train", "--resume", str(run)], elsewhere, SIGNAL_AT="5", SIGNAL="SIGTERM")
    assert resumed.returncode == 143, resumed.stderr[-3000:]
    assert "interrupted by SIGTERM after 3 iterations" in resumed.stderr
    done = _cli(tmp_path, ["train", "--resume", str(run)], elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "done: 1 iterations (5 -> 6)" in done.stderr
    assert load_state_file(run / STATE_FILE)["iteration"] == 6


def test_cli_disk_full_during_training_is_one_line_with_the_resume_command(tmp_path, monkeypatch, capsys):
    import errno

    import gradguide.train.state as S
    from gradguide.cli import main

    data = _images(tmp_path / "hr")
    run = tmp_path / "run"
    real = S.atomic_write
    writes = [0]

    def full_after_first(path, write, **kw):
        if path.name == STATE_FILE:
            writes[0] += 1
            if writes[0] > 1:  # the disk fills up while the second state is written

                def write(fh):
                    fh.write(b"half")
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real(path, write, **kw)

    monkeypatch.setattr(S, "atomic_write", full_after_first)
    args = [
        "train", "quickstart", "--data-hr", str(data), "--out", str(run), "--device", "cpu",
        "--set", "model.backbone_config.nf=4", "--set", "model.backbone_config.nb=1", "--set", "model.backbone_config.gc=4",
        "--set", "model.scale=2", "--set", "data.crop=16", "--set", "train.iterations=3", "--set", "train.batch_size=2",
        "--set", "train.checkpoint_every=1", "--set", "train.time_limit_s=0", "--set", "val.every=0",
        "--set", "log.tensorboard=false", "--set", "log.progress=false", "--set", "loss.perceptual=0",
    ]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "No space left on device; training stopped" in err[-1]
    assert ".tmp" not in err[-1] and err[-1].endswith(f"resume with: gradguide train --resume {run}")
    assert load_state_file(run / STATE_FILE)["iteration"] == 1
    assert not list(run.glob(".*.tmp"))
