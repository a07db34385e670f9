"""The trainer: warm-up by module, NaN guard, discriminator steps, EMA, validation and
save-best, checkpoint contents, atomic state writes, the resumable sampler, AMP."""
from __future__ import annotations

import os

import pytest
import torch

from gradguide.checkpoints import load as gg_load
from gradguide.train.recipe import recipe_from_dict
from gradguide.train.sampler import EpochIndexed, ResumableBatchSampler
from gradguide.train.state import atomic_torch_save, load_state_file
from gradguide.train.trainer import STATE_FILE, Trainer, TrainingStopped, train


class TinyDS(torch.utils.data.Dataset):
    """Items are a pure function of (epoch, index). ``nan_from_epoch``: HR becomes NaN."""

    def __init__(self, n=4, crop=16, scale=2, nan_from_epoch=None):
        self.n, self.crop, self.scale, self.epoch, self.nan_from = n, crop, scale, 0, nan_from_epoch

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        hr = torch.rand(3, self.crop, self.crop, generator=g)
        lr = torch.nn.functional.avg_pool2d(hr[None], self.scale)[0]
        if self.nan_from is not None and self.epoch >= self.nan_from:
            hr = hr * float("nan")
        return lr, hr


def tiny_recipe(**sections):
    base = {
        "model": {"backbone": "rrdbnet", "guidance": "paper", "backbone_config": {"nf": 4, "nb": 2, "gc": 4}, "scale": 2},
        "data": {"crop": 16},
        "train": {"iterations": 2, "batch_size": 2, "checkpoint_every": 1000},
        "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
        "loss": {"perceptual": 0.0, "gan": 0.0, "gradient_gan": 0.0, "discriminator": "unet_sn", "gradient_discriminator": "unet_sn", "discriminator_nf": 4},
        "val": {"every": 0},
        "log": {"progress": False, "tensorboard": False, "every": 1000},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return recipe_from_dict(base, "tiny.toml").validate()


def _params(module):
    return {id(p): p.detach().clone() for p in module.parameters()}


def test_warmup_trains_only_the_warmup_modules(tmp_path):
    r = tiny_recipe(train={"iterations": 2, "warmup_iters": 1})
    tr = Trainer(r, tmp_path, train_dataset=TinyDS())
    warm = {id(p) for m in tr.G.warmup_modules() for p in m.parameters()}
    assert warm and len(warm) < len(list(tr.G.parameters()))
    before = _params(tr.G)
    tr.recipe.train.iterations = 1
    tr.fit()
    after1 = _params(tr.G)
    changed = {k for k in before if not torch.equal(before[k], after1[k])}
    assert changed and changed <= warm, "only the fusion block may change during the warm-up"
    assert all(p.requires_grad for m in tr.G.warmup_modules() for p in m.parameters())
    tr.recipe.train.iterations = 2
    tr.fit()
    after2 = _params(tr.G)
    changed2 = {k for k in before if not torch.equal(after1[k], after2[k])}
    assert changed2 - warm, "after the warm-up the whole generator trains"


def test_nan_guard_skips_then_stops_keeping_last_good_checkpoint(tmp_path):
    # one batch per epoch; epoch 0 is fine, later epochs have NaN targets
    r = tiny_recipe(train={"iterations": 10, "batch_size": 2, "checkpoint_every": 1, "nan_patience": 3})
    tr = Trainer(r, tmp_path, train_dataset=TinyDS(n=2, nan_from_epoch=1))
    with pytest.raises(TrainingStopped, match="3 non-finite steps in a row") as e:
        tr.fit()
    assert "iteration 1" in str(e.value)
    assert tr.iteration == 4 and tr.skipped_steps == 3
    state = load_state_file(tmp_path / STATE_FILE)
    assert state["iteration"] == 1  # the last good checkpoint, not overwritten
    saved = state["G"]
    for k, v in tr.G.state_dict().items():  # the skipped steps did not touch the weights
        assert torch.equal(saved[k], v), k
    for p in tr.G.parameters():
        assert torch.isfinite(p).all()


def test_gan_step_updates_both_discriminators_and_checkpoint_has_everything(tmp_path):
    r = tiny_recipe(
        loss={"gan": 0.005, "gradient_gan": 0.005, "discriminator": "vgg128", "gradient_discriminator": "unet_sn"},
        data={"crop": 32},
        train={"iterations": 2, "ema": 0.5, "checkpoint_every": 2},
    )
    tr = Trainer(r, tmp_path, train_dataset=TinyDS(crop=32))
    assert tr.D_I is not None and tr.D_GM is not None
    d_before = (_params(tr.D_I), _params(tr.D_GM))
    res = tr.fit()
    assert res.iteration == 2
    for d, before in zip((tr.D_I, tr.D_GM), d_before):
        after = _params(d)
        assert any(not torch.equal(before[k], after[k]) for k in before)
    state = load_state_file(tmp_path / STATE_FILE)
    for key in ("G", "D_I", "D_GM", "ema", "optimizers", "schedulers", "scaler", "rng", "sampler", "iteration"):
        assert state[key] is not None, key
    assert set(state["optimizers"]) == {"G", "D_I", "D_GM"} and set(state["schedulers"]) == {"G", "D_I", "D_GM"}
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    assert state["sampler"]["position"] == 4 % 4 and state["sampler"]["epoch"] == 1
    # G is gradguide safetensors loadable by gradguide.load, equal to the trained G
    G = gg_load(tmp_path / "G_latest.safetensors")
    for k, v in tr.G.state_dict().items():
        assert torch.equal(G.state_dict()[k], v), k
    ema = gg_load(tmp_path / "G_ema_latest.safetensors")
    assert any(not torch.equal(ema.state_dict()[k], v) for k, v in tr.G.state_dict().items() if v.is_floating_point())


def test_plain_backbone_and_validation_save_best(tmp_path):
    r = tiny_recipe(
        model={"guidance": "none"},
        loss={"branch": 0.0, "pixel": 1.0, "gradient_pixel": 0.0},
        train={"iterations": 3},
        val={"every": 1, "metric": "psnr_y", "mode": "max"},
    )
    val = TinyDS(n=2, crop=24)
    res = train(r, tmp_path, train_dataset=TinyDS(), val_dataset=val)
    assert res.last_val is not None and res.best is not None
    assert len(res.history) == 3
    best = max(h["psnr_y"] for h in res.history)
    assert res.best["value"] == pytest.approx(best)
    G = gg_load(tmp_path / "G_best.safetensors")
    assert G.scale == 2
    # G_best really holds the weights of the best validation
    from gradguide.eval.metrics import psnr_y

    vals = []
    with torch.no_grad():
        for i in range(len(val)):
            lr, hr = val[i]
            out = G(lr[None])
            vals.append(float(psnr_y(out.clamp(0, 1)[0], hr, crop=2)))
    assert sum(vals) / len(vals) == pytest.approx(best, abs=1e-6)


def test_bf16_autocast_and_channels_last_step(tmp_path):
    r = tiny_recipe(train={"iterations": 1, "amp": "bf16", "channels_last": True})
    tr = Trainer(r, tmp_path, train_dataset=TinyDS())
    before = _params(tr.G)
    res = tr.fit()
    assert res.skipped_steps == 0
    assert any(not torch.equal(before[k], v) for k, v in _params(tr.G).items())
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())


def test_refuses_to_overwrite_a_run_and_resume_needs_state(tmp_path):
    from gradguide.errors import CheckpointError

    r = tiny_recipe(train={"iterations": 1})
    with pytest.raises(CheckpointError, match="no training state"):
        Trainer(r, tmp_path / "a", resume=True, train_dataset=TinyDS())
    train(r, tmp_path / "b", train_dataset=TinyDS())
    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(r, tmp_path / "b", train_dataset=TinyDS())


# ---- atomic state


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    p = tmp_path / "state.pt"
    atomic_torch_save({"format": "x", "v": torch.ones(3)}, p)
    old = p.read_bytes()
    import gradguide.train.state as S

    real = S.atomic_write_bytes

    def failing(path, write):
        def half(f):
            f.write(b"garbage")
            raise OSError("disk full")

        return real(path, half)

    monkeypatch.setattr(S, "atomic_write_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"v": torch.zeros(3)}, p)
    assert p.read_bytes() == old
    assert [f.name for f in tmp_path.iterdir()] == ["state.pt"]  # no temp file left


def test_state_load_is_weights_only(tmp_path):
    from gradguide.errors import CheckpointError

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    p = tmp_path / "state.pt"
    torch.save({"format": "gradguide-train-state", "version": 1, "x": Evil()}, p)
    with pytest.raises(CheckpointError, match="cannot load"):
        load_state_file(p)


# ---- sampler


def test_sampler_shards_a_global_batch_and_resumes():
    world = 2
    samplers = [ResumableBatchSampler(10, 4, seed=3, rank=r, world_size=world) for r in range(world)]
    its = [iter(s) for s in samplers]
    seen_epoch0 = []
    for _ in range(2):  # 10 // 4 = 2 batches per epoch
        parts = [next(it) for it in its]
        assert all(len(p) == 2 for p in parts)
        flat = [x for p in parts for x in p]
        assert len(set(flat)) == 4 and all(e == 0 for e, _ in flat)
        seen_epoch0 += flat
    assert len(set(seen_epoch0)) == 8
    nxt = next(its[0])
    assert all(e == 1 for e, _ in nxt)
    # resume from a consumed position reproduces the stream
    s = ResumableBatchSampler(10, 4, seed=3)
    ref = iter(s)
    stream = [next(ref) for _ in range(7)]
    s2 = ResumableBatchSampler(10, 4, seed=3)
    s2.advance(3)
    s3 = ResumableBatchSampler(10, 4, seed=3)
    s3.load_state_dict(s2.state_dict())
    assert [b for b, _ in zip(iter(s3), range(4))] == stream[3:]
    with pytest.raises(ValueError, match="seed"):
        ResumableBatchSampler(10, 4, seed=4).load_state_dict(s2.state_dict())
    with pytest.raises(ValueError, match="divisible"):
        ResumableBatchSampler(10, 3, rank=0, world_size=2)


def test_epoch_indexed_passes_the_epoch():
    ds = EpochIndexed(TinyDS())
    a = ds[(0, 1)]
    b = ds[(1, 1)]
    assert not torch.equal(a[1], b[1]) and torch.equal(ds[(0, 1)][1], a[1])


def test_time_limit_stops_with_a_checkpoint_and_resume_finishes(tmp_path):
    r = tiny_recipe(train={"iterations": 3, "time_limit_s": 1e-6})
    res = train(r, tmp_path, train_dataset=TinyDS())
    assert res.stopped == "time limit" and res.iteration == 1
    assert load_state_file(tmp_path / STATE_FILE)["iteration"] == 1
    r2 = tiny_recipe(train={"iterations": 3})
    res2 = train(r2, tmp_path, resume=True, train_dataset=TinyDS())
    assert res2.iteration == 3 and res2.stopped is None


def test_pretrained_rrdbnet_initialises_the_spsr_backbone(tmp_path):
    from gradguide.checkpoints import save as gg_save
    from gradguide_backbones.rrdb import RRDBNet

    torch.manual_seed(123)
    psnr = RRDBNet(nf=4, nb=2, gc=4, scale=2)
    gg_save(psnr, tmp_path / "psnr.safetensors")
    r = tiny_recipe(model={"pretrained": str(tmp_path / "psnr.safetensors")}, train={"iterations": 1})
    tr = Trainer(r, tmp_path / "run", train_dataset=TinyDS())
    own = tr.G.backbone.state_dict()
    src = psnr.state_dict()
    shared = [k for k in own if k in src]
    assert len(shared) > 10
    for k in shared:
        assert torch.equal(own[k], src[k]), k
    assert tr.G.training  # loading did not leave G in eval mode
    # strict mode refuses the keys the fusion replaced
    from gradguide.errors import CheckpointError

    r2 = tiny_recipe(model={"pretrained": str(tmp_path / "psnr.safetensors"), "pretrained_strict": True})
    with pytest.raises(CheckpointError):
        Trainer(r2, tmp_path / "run2", train_dataset=TinyDS())


def test_tensorboard_scalars_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = tiny_recipe(train={"iterations": 2}, log={"tensorboard": True, "every": 1})
    train(r, tmp_path, train_dataset=TinyDS())
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/total", "loss/pixel", "loss/branch", "lr/G"} <= tags
    assert [e.step for e in acc.Scalars("loss/total")] == [1, 2]


def test_lazy_package_exports():
    import gradguide.train as gt

    assert gt.train is train and gt.Trainer is Trainer
    with pytest.raises(AttributeError):
        gt.nope


def test_resume_compares_the_model_as_built_not_as_spelled():
    """A run saved with the pre-registry [model] keys resumes under the new keys; a real
    difference is still refused."""
    from gradguide.train.recipe import ModelConfig

    old = ModelConfig.from_table({"arch": "spsr", "nf": 4, "nb": 2, "gc": 4, "scale": 2})
    new = ModelConfig(backbone="rrdbnet", guidance="paper", scale=2, backbone_config={"nf": 4, "nb": 2, "gc": 4})
    assert old.resolved() == new.resolved()
    assert ModelConfig(backbone="rrdbnet", guidance="paper", scale=2, backbone_config={"nf": 64}).resolved() == (
        ModelConfig(backbone="rrdbnet", guidance="paper", scale=2).resolved()
    )  # the factory's defaults are filled in
    assert ModelConfig(backbone="rrdbnet", guidance="lr", scale=2).resolved() != ModelConfig(backbone="rrdbnet", guidance="paper", scale=2).resolved()


def _trained(tmp_path, name, **train):
    r = tiny_recipe(
        loss={"gan": 0.005, "gradient_gan": 0.005, "discriminator": "vgg128", "gradient_discriminator": "vgg128"},
        data={"crop": 32}, train={"iterations": 2, **train},
    )
    tr = Trainer(r, tmp_path / name, train_dataset=TinyDS(crop=32))
    tr.fit()
    return {f"{n}.{k}": v.detach().clone() for n, m in (("G", tr.G), ("D_I", tr.D_I), ("D_GM", tr.D_GM))
            for k, v in m.state_dict().items()}


def test_reuse_real_logits_trains_bitwise_like_two_passes(tmp_path):
    base = _trained(tmp_path, "base")
    reuse = _trained(tmp_path, "reuse", reuse_real_logits=True)
    for k, v in base.items():
        if "running_" in k or "num_batches_tracked" in k:
            continue  # BatchNorm statistics see HR once per step instead of twice
        assert torch.equal(v, reuse[k]), k
    assert any(not torch.equal(base[k], reuse[k]) for k in base if "running_mean" in k)


def test_fused_adam_switch(tmp_path):
    from gradguide.train.build import build_optimizers

    r = tiny_recipe(optim={"fused": True})
    tr = Trainer(r, tmp_path / "fused", train_dataset=TinyDS())
    assert tr.opt.g.defaults["fused"] is True
    assert build_optimizers(tiny_recipe(), tr.G, None, None).g.defaults["fused"] is None
    start = {k: v.clone() for k, v in tr.G.state_dict().items()}
    tr.fit()
    loop = Trainer(tiny_recipe(), tmp_path / "loop", train_dataset=TinyDS())
    loop.fit()
    moved = 0
    for k, v in loop.G.state_dict().items():
        torch.testing.assert_close(tr.G.state_dict()[k], v, rtol=1e-5, atol=1e-6)
        moved += int(not torch.equal(start[k], tr.G.state_dict()[k]))
    assert moved
