"""Real-world training: the [degradation] recipe section, LDL terms in recipes, the
trainer's on-device degradation with per-item keys (exact resume), and CPU smoke runs of
the real-world recipes."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gradguide.cli import main
from gradguide.errors import RecipeError
from gradguide.train.recipe import apply_overrides, load_recipe, recipe_from_dict, resolve_recipe
from gradguide.train.trainer import Trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")

REAL = ["realesrgan_x4", "real_spsr_x4", "realesrgan_x4_ldl", "real_spsr_x4_ldl"]
SMOKE = [f"{n}_smoke" for n in REAL]


def _hr_images(n=3, size=40, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        yy, xx = np.mgrid[0:size, 0:size]
        img = 128 + 80 * np.sin(xx / (2.0 + i))[..., None] * np.cos(yy / 3.0)[..., None] + rng.normal(0, 8, (size, size, 3))
        out.append((f"img{i}", img.clip(0, 255).astype(np.uint8)))
    return out


def _smoke(name: str, **sections):
    r = resolve_recipe(name, validate=False)
    sets = ["train.iterations=2", "train.checkpoint_every=2", "log.tensorboard=false", "log.progress=false", "train.device=\"cpu\""]
    sets += [f"{k}={v}" for k, v in sections.items()]
    return apply_overrides(r, sets)


@pytest.mark.parametrize("name", REAL + SMOKE)
def test_real_world_recipes_are_valid_and_say_where_they_follow_and_depart(name):
    r = resolve_recipe(name)
    assert r.degradation.enabled and r.train.ema > 0
    assert r.loss.gan > 0 and r.loss.discriminator == "unet_sn"
    assert ("ldl" in r.loss.terms) == ("_ldl" in name)
    from gradguide.plugins import registries

    toml = registries().recipes.get(name).path.read_text(encoding="utf-8")
    if not name.endswith("_smoke"):
        assert "Follows" in toml and "Departs" in toml
        assert (r.optim.betas, r.train.ema, r.loss.pixel, r.loss.gan, r.data.crop) == ([0.9, 0.99], 0.999, 1.0, 0.1, 256)
        assert r.degradation == dataclasses.replace(type(r.degradation)(), enabled=True)  # the published defaults


@pytest.mark.parametrize("key,value,msg", [
    ("sinc_prob", "1.5", "must be in [0, 1]"),
    ("blur_kernel_size", "20", "odd integer"),
    ("blur_kernel_size2", "51", "odd integer in [7, 31]"),
    ("jpeg_range", "[0, 95]", "1 <= low"),
    ("jpeg_range2", "[30, 101]", "<= 100"),
])
def test_bad_degradation_values_are_one_line_naming_the_key(tmp_path, capsys, key, value, msg):
    f = tmp_path / "bad.toml"
    f.write_text(f'name = "bad"\n[degradation]\nenabled = true\n{key} = {value}\n')
    with pytest.raises(RecipeError, match=rf"bad.toml: degradation\.{key} .*{re.escape(msg)}"):
        load_recipe(f)
    img = tmp_path / "hr"
    img.mkdir()
    assert main(["train", "realesrgan_x4_smoke", "--data-hr", str(img), "--set", f"degradation.{key}={value}", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"degradation.{key}" in err


def test_terms_are_checked_in_the_recipe():
    base = {"model": {"backbone": "rrdbnet", "guidance": "none", "backbone_config": {"nf": 4, "nb": 1, "gc": 4}}, "loss": {"branch": 0.0}}
    with pytest.raises(RecipeError, match=r"loss\.terms\.ldl .*train\.ema > 0"):
        recipe_from_dict({**base, "loss": {"branch": 0.0, "terms": {"ldl": 1.0}}}, "r.toml").validate()
    with pytest.raises(RecipeError, match=r"loss\.terms\.ldll is not a registered loss term .*ldl"):
        recipe_from_dict({**base, "train": {"ema": 0.9}, "loss": {"branch": 0.0, "terms": {"ldll": 1.0}}}, "r.toml").validate()
    with pytest.raises(RecipeError, match=r"degradation\.enabled .*paired data\.lr"):
        recipe_from_dict({**base, "data": {"lr": "x"}, "degradation": {"enabled": True}}, "r.toml").validate()
    r = recipe_from_dict({**base, "train": {"ema": 0.9}, "loss": {"branch": 0.0, "terms": {"ldl_gradient": {"weight": 0.5, "kernel_size": 5}}}}, "r.toml")
    assert r.validate().loss.terms["ldl_gradient"]["kernel_size"] == 5


def _hr_dataset(r, n=3):
    from gradguide.data.datasets import HRFolderDataset

    return HRFolderDataset(_hr_images(n), r.model.scale, crop=r.data.crop, seed=r.data.seed)


@pytest.mark.parametrize("name", ["realesrgan_x4_smoke", "real_spsr_x4_smoke"])
def test_smoke_recipes_train_on_cpu(tmp_path, name):
    """CI's smoke run of both real-world recipes: OTF degradations, EMA, U-Net SN D."""
    r = _smoke(name)
    res = train(r, tmp_path, train_dataset=_hr_dataset(r))
    assert res.iteration == 2 and res.skipped_steps == 0
    assert (tmp_path / "G_ema_latest.safetensors").is_file()


def test_trainer_degrades_on_the_device_with_the_items_keys_and_feeds_ldl_the_ema(tmp_path):
    from gradguide.data.degrade import degrade, item_key, usm_sharp

    r = _smoke("real_spsr_x4_ldl_smoke")
    tr = Trainer(r, tmp_path, train_dataset=_hr_dataset(r))
    try:
        seen = {}
        forward = tr.loss.forward

        def spy(out, hr, *a, **kw):
            seen["sr"], seen["hr"], seen["ema_sr"] = out.sr.detach(), hr, kw.get("ema_sr")
            return forward(out, hr, *a, **kw)

        tr.loss.forward = spy
        lr, hr, keys = next(iter(tr.loader))
        idx = [i for _, i in tr.sampler._batch(tr.sampler.permutation(0), 0, 0)]
        assert keys.tolist() == [item_key(r.data.seed, 0, i) for i in idx]
        ok, terms = tr.train_step(lr, hr, keys)
        assert ok and {"ldl", "ldl_gradient"} <= set(terms)
        assert torch.allclose(seen["hr"], usm_sharp(hr))  # gt_usm: the sharpened HR is the target
        assert seen["ema_sr"] is not None and seen["ema_sr"].shape == seen["sr"].shape
        # the model saw the pipeline's LR of these keys, not the dataset's bicubic LR
        expected = degrade(usm_sharp(hr), r.degradation, keys, scale=4)
        assert expected.shape == lr.shape and not torch.equal(expected, lr)
        with pytest.raises(ValueError, match="degradation keys"):
            tr.train_step(lr, hr)
    finally:
        tr.close()


def test_exact_resume_with_degradations(tmp_path):
    def run(out, iterations, resume=False):
        r = _smoke("real_spsr_x4_smoke", **{"train.iterations": iterations, "train.deterministic": "true"})
        return train(r, out, resume=resume, train_dataset=_hr_dataset(r, 4))

    run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    run(tmp_path / "b", 4, resume=True)
    a, b = load_file(tmp_path / "a" / "G_latest.safetensors"), load_file(tmp_path / "b" / "G_latest.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
