"""DDP: two gloo processes on CPU (torchrun) train a few iterations; G and both
discriminators end identical across ranks, and the recipe's batch size is global (a
2-process run matches a 1-process run of the same global batch)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")

RECIPES = textwrap.dedent(
    """
    from gradguide.train.recipe import recipe_from_dict

    def recipe(kind, data):
        loss = {"perceptual": 0.0, "gan": 0.0, "gradient_gan": 0.0, "pixel": 1.0, "gradient_pixel": 0.1, "branch": 0.5}
        train = {"iterations": 3, "batch_size": 4, "checkpoint_every": 100, "device": "cpu", "deterministic": True}
        if kind == "gan":
            loss.update(gan=0.005, gradient_gan=0.005, discriminator="vgg128", gradient_discriminator="unet_sn", discriminator_nf=4)
            train.update(warmup_iters=1, ema=0.9)
        return recipe_from_dict({
            "model": {"backbone": "rrdbnet", "guidance": "paper", "backbone_config": {"nf": 4, "nb": 2, "gc": 4}, "scale": 2},
            "data": {"hr": data, "crop": 32, "seed": 1},
            "train": train,
            "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
            "loss": loss,
            "val": {"every": 0},
            "log": {"progress": False, "tensorboard": False},
        }, kind).validate()
    """
)

DRIVER = RECIPES + textwrap.dedent(
    """
    import os, sys
    from safetensors.torch import save_file
    from gradguide.train.trainer import Trainer

    out, data = sys.argv[1], sys.argv[2]
    rank = int(os.environ["RANK"])
    for kind in ("gan", "pixel"):
        tr = Trainer(recipe(kind, data), os.path.join(out, kind))
        assert tr.dist.world_size == 2 and tr.dist.backend == "gloo"
        assert tr.sampler.local_batch == 2  # the global batch of 4 is split
        tr.fit()
        nets = {"G": tr.G, "D_I": tr.D_I, "D_GM": tr.D_GM}
        tensors = {f"{n}.{k}": v.detach().contiguous() for n, m in nets.items() if m is not None for k, v in m.state_dict().items()}
        save_file(tensors, os.path.join(out, f"{kind}_rank{rank}.safetensors"))
    tr.close()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _images(folder, n=8, size=40):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(0, 255, (size // 4, size // 4, 3), dtype=np.uint8)
        Image.fromarray(base).resize((size, size), Image.BICUBIC).save(folder / f"im{i}.png")
    return folder


def test_two_gloo_processes_stay_identical(tmp_path):
    data = _images(tmp_path / "hr")
    out = tmp_path / "out"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(driver), str(out), str(data),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for kind in ("gan", "pixel"):
        r0, r1 = load_file(out / f"{kind}_rank0.safetensors"), load_file(out / f"{kind}_rank1.safetensors")
        assert r0.keys() == r1.keys()
        nets = {k.split(".")[0] for k in r0}
        assert nets == ({"G", "D_I", "D_GM"} if kind == "gan" else {"G"})
        for k in r0:
            assert torch.equal(r0[k], r1[k]), f"{kind}: {k} differs between ranks"
    # only rank 0 wrote the run's files
    assert (out / "gan" / "state.pt").is_file() and (out / "gan" / "G_latest.safetensors").is_file()

    # the batch size is global: one process with batch 4 reaches the same weights
    ns: dict = {}
    exec(RECIPES, ns)
    from gradguide.train.trainer import train

    single = train(ns["recipe"]("pixel", str(data)), tmp_path / "single")
    from gradguide.checkpoints import load as gg_load

    G1 = gg_load(single.out_dir / "G_latest.safetensors").state_dict()
    r0 = load_file(out / "pixel_rank0.safetensors")
    for k, v in G1.items():
        torch.testing.assert_close(r0[f"G.{k}"], v, rtol=1e-4, atol=1e-5, msg=f"G.{k}: 2x2 DDP != 1x4")
    assert torch.are_deterministic_algorithms_enabled() is False  # the trainer restored the global setting
