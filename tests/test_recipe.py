"""Recipes: typed TOML, unknown keys, overrides, validation, shipped recipes, CLI errors."""
from __future__ import annotations

import dataclasses
import tomllib

import pytest

from gradguide.cli import main
from gradguide.errors import RecipeError
from gradguide.train.recipe import (
    Recipe,
    apply_overrides,
    list_recipes,
    load_recipe,
    recipe_from_dict,
    recipe_to_toml,
    resolve_recipe,
)

SHIPPED = sorted(
    ["default_x4", "esrgan_x4", "quickstart", "rrdb_psnr_x4", "spsr_wo_gb_x4", "spsr_wo_gl_x4", "spsr_x4", "spsr_x4_official"]
    + [f"{n}{v}" for n in ("realesrgan_x4", "real_spsr_x4", "realesrgan_x4_ldl", "real_spsr_x4_ldl") for v in ("", "_smoke")]
)


def test_shipped_recipes_are_registered_and_valid():
    assert list_recipes() == SHIPPED
    for name in SHIPPED:
        r = resolve_recipe(name)
        assert isinstance(r, Recipe) and r.name == name
        # data paths are arguments, never hard-coded
        assert r.data.hr == r.data.lr == r.data.val_hr == r.data.val_lr == ""


def test_spsr_x4_has_the_paper_settings():
    r = resolve_recipe("spsr_x4")
    assert (r.model.arch, r.model.nf, r.model.nb, r.model.gc, r.model.scale) == ("spsr", 64, 23, 32, 4)
    assert (r.optim.lr_g, r.optim.lr_d, r.optim.betas, r.optim.eps) == (1e-4, 1e-4, [0.9, 0.999], 1e-8)
    assert r.optim.milestones == [50_000, 100_000, 200_000, 300_000] and r.optim.gamma == 0.5
    assert r.train.iterations == 500_000 and r.train.warmup_iters == 5000
    assert r.data.crop == 128 and r.train.batch_size == 30
    l = r.loss
    assert (l.perceptual, l.pixel, l.gan, l.gradient_pixel, l.gradient_gan, l.branch) == (1.0, 0.01, 0.005, 0.01, 0.005, 0.5)
    assert l.perceptual_layer == "conv5_4" and l.on_missing_vgg == "error"


def test_spsr_x4_official_sets_the_reference_codes_choices():
    paper, off = resolve_recipe("spsr_x4"), resolve_recipe("spsr_x4_official")
    l = off.loss
    assert (l.gradient_criterion, l.gradient_padding, l.term_order) == ("mse", "official_loss", "official")
    assert l.discriminator == l.gradient_discriminator == "vgg128_official"
    t, o = off.train, off.optim
    assert not (t.channels_last or t.reuse_real_logits or t.compile or o.fused) and t.amp == "none"
    # everything else is the paper recipe's
    assert (paper.loss.gradient_criterion, paper.loss.gradient_padding, paper.loss.term_order) == ("l1", "zeros", "default")
    same = lambda r: {**dataclasses.asdict(r.model), **{f"optim.{k}": v for k, v in dataclasses.asdict(r.optim).items()},
                      **{f"loss.{k}": v for k, v in dataclasses.asdict(r.loss).items()
                         if k not in ("gradient_criterion", "gradient_padding", "term_order", "discriminator", "gradient_discriminator")},
                      "crop": r.data.crop, "batch": r.train.batch_size, "its": r.train.iterations, "warmup": r.train.warmup_iters}
    assert same(paper) == same(off)
    # nothing that reorders or re-rounds the reference's step is accepted with it
    for key in ("train.channels_last=true", "train.reuse_real_logits=true", "optim.fused=true", "train.amp=bf16", "train.compile=true"):
        with pytest.raises(RecipeError, match=key.split("=")[0].replace(".", r"\.") + " must be off"):
            apply_overrides(off, [key])


def test_baseline_and_ablations_differ_only_in_gradient_parts():
    spsr, esr = resolve_recipe("spsr_x4"), resolve_recipe("esrgan_x4")
    wo_gb, wo_gl = resolve_recipe("spsr_wo_gb_x4"), resolve_recipe("spsr_wo_gl_x4")
    assert esr.model.arch == "rrdbnet" and (esr.loss.gradient_pixel, esr.loss.gradient_gan, esr.loss.branch) == (0, 0, 0)
    # w/o GB: no branch, gradient losses kept
    assert wo_gb.model.arch == "rrdbnet" and wo_gb.loss.branch == 0
    assert (wo_gb.loss.gradient_pixel, wo_gb.loss.gradient_gan) == (0.01, 0.005)
    # w/o GL: branch (and its loss) kept, no gradient losses on M(SR)
    assert wo_gl.model.arch == "spsr" and wo_gl.loss.branch == 0.5
    assert (wo_gl.loss.gradient_pixel, wo_gl.loss.gradient_gan) == (0, 0)
    for r in (esr, wo_gb, wo_gl):
        assert r.optim == spsr.optim and r.train.batch_size == spsr.train.batch_size
        assert (r.loss.perceptual, r.loss.pixel, r.loss.gan) == (1.0, 0.01, 0.005)
    psnr = resolve_recipe("rrdb_psnr_x4")
    assert psnr.optim.lr_g == 2e-4 and psnr.optim.milestones == [200_000, 400_000, 600_000, 800_000]
    assert psnr.train.iterations == 1_000_000 and psnr.train.batch_size == 16
    assert (psnr.loss.pixel, psnr.loss.perceptual, psnr.loss.gan) == (1.0, 0.0, 0.0)


def test_unknown_keys_are_refused_with_a_suggestion(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text("[train]\nbatch_sise = 8\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    msg = str(e.value)
    assert str(f) in msg and "train.batch_sise" in msg and "batch_size" in msg and "\n" not in msg
    f.write_text("[optimiser]\nlr_g = 1\n")
    with pytest.raises(RecipeError, match="did you mean 'optim'"):
        load_recipe(f)


def test_types_are_checked():
    with pytest.raises(RecipeError, match=r"train\.batch_size must be int"):
        recipe_from_dict({"train": {"batch_size": "8"}}, "x.toml")
    with pytest.raises(RecipeError, match=r"train\.deterministic must be bool"):
        recipe_from_dict({"train": {"deterministic": 1}}, "x.toml")
    r = recipe_from_dict({"optim": {"lr_g": 1}}, "x.toml")  # ints widen to float
    assert r.optim.lr_g == 1.0 and isinstance(r.optim.lr_g, float)


@pytest.mark.parametrize(
    "data,key",
    [
        ({"data": {"crop": 30}}, "data.crop"),
        ({"model": {"scale": 5}}, "model.scale"),
        ({"model": {"backbone": "rrdbnet", "guidance": "none"}, "loss": {"branch": 0.5}}, "loss.branch"),
        ({"train": {"amp": "fp8"}}, "train.amp"),
        ({"optim": {"milestones": [20, 10]}}, "optim.milestones"),
        ({"model": {"backbone": "nope", "guidance": "lr"}}, "model.backbone"),
        ({"model": {"guidance": "hr"}}, "model.guidance"),
        ({"val": {"metric": "lpips"}}, "val.metric"),
    ],
)
def test_validation_names_the_key(data, key):
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        recipe_from_dict(data, "x.toml").validate()


def test_overrides_coerce_types():
    r = resolve_recipe("spsr_x4")
    r2 = apply_overrides(
        r,
        [
            "train.batch_size=8",
            "optim.lr_g=2e-4",
            "optim.milestones=[10, 20]",
            "train.deterministic=true",
            "data.hr=/some/dir",
            "data.val_hr=2024",
            "model.backbone_config.nf=16",
        ],
    )
    assert r2.train.batch_size == 8 and r2.optim.lr_g == 2e-4 and r2.optim.milestones == [10, 20]
    assert r2.train.deterministic is True and r2.data.hr == "/some/dir" and r2.data.val_hr == "2024"
    assert r2.model.backbone_config == {"nf": 16}
    assert r.train.batch_size == 30  # the original is untouched
    with pytest.raises(RecipeError, match="did you mean 'batch_size'"):
        apply_overrides(r, ["train.batch_sise=8"])
    with pytest.raises(RecipeError, match="cannot parse"):
        apply_overrides(r, ["train.batch_size=eight"])
    with pytest.raises(RecipeError, match="section.key=value"):
        apply_overrides(r, ["train.batch_size"])


def test_toml_round_trip():
    r = apply_overrides(resolve_recipe("quickstart"), ["data.hr=/x", "loss.gan=0.5"])
    back = recipe_from_dict(tomllib.loads(recipe_to_toml(r)), "back").validate()
    assert back == r


def test_resolve_unknown_name_suggests():
    with pytest.raises(RecipeError, match="spsr_x4"):
        resolve_recipe("spsr_x5")


# ---- command line: bad inputs give one line and exit code 2


def _run(capsys, *argv):
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_recipes_lists_them(capsys):
    code, out, _ = _run(capsys, "recipes")
    assert code == 0
    for name in SHIPPED:
        assert name in out


def _one_line_error(code, err, *needles):
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_missing_data_folder(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "quickstart", "--data-hr", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    _one_line_error(code, err, "--data-hr", "not found")


def test_cli_empty_data_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "train", "quickstart", "--data-hr", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    _one_line_error(code, err, "empty")
    assert not (tmp_path / "o" / "state.pt").exists()


def test_cli_misspelled_key_in_file(capsys, tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[model]\nbackbone = "rrdbnet"\nguidance = "paper"\n[loss]\ngradient_gann = 0.1\n')
    code, _, err = _run(capsys, "train", str(f), "--data-hr", str(tmp_path))
    _one_line_error(code, err, "mine.toml", "loss.gradient_gann", "gradient_gan")


def test_cli_unsupported_scale(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "spsr_x4", "--data-hr", str(tmp_path), "--set", "model.scale=5")
    _one_line_error(code, err, "model.scale", "5")


def test_cli_dry_run_prints_resolved_recipe(capsys, tmp_path):
    code, out, _ = _run(capsys, "train", "spsr_x4", "--data-hr", str(tmp_path), "--set", "train.batch_size=2", "--dry-run")
    assert code == 0
    r = recipe_from_dict(tomllib.loads(out), "out").validate()
    assert r.train.batch_size == 2 and r.data.hr == str(tmp_path)


def test_deprecated_model_keys_map_onto_backbone_and_guidance():
    with pytest.warns(FutureWarning, match="model.arch is deprecated; use model.backbone"):
        r = recipe_from_dict({"model": {"arch": "spsr", "nf": 16}}, "old.toml").validate()
    assert (r.model.backbone, r.model.guidance, r.model.backbone_config) == ("rrdbnet", "paper", {"nf": 16})
    with pytest.warns(FutureWarning, match="model.fusion is deprecated; use model.guidance"):
        r = recipe_from_dict({"model": {"arch": "wrap", "backbone": "edsr", "fusion": "lr"}}, "old.toml").validate()
    assert (r.model.backbone, r.model.guidance) == ("edsr", "lr")
    with pytest.warns(FutureWarning, match="model.nb is deprecated"):
        r2 = apply_overrides(resolve_recipe("quickstart"), ["model.arch=rrdbnet", "model.nb=2", "loss.branch=0"])
    assert (r2.model.guidance, r2.model.backbone_config["nb"]) == ("none", 2)


def test_loss_section_is_spsr_loss_signature():
    import inspect

    from gradguide.losses import SPSRLoss
    from gradguide.train.recipe import LossConfig

    params = inspect.signature(SPSRLoss.__init__).parameters
    defaults = LossConfig()
    for name in ("pixel", "perceptual", "gan", "gradient_pixel", "gradient_gan", "branch", "gradient_criterion", "eps"):
        assert getattr(defaults, name) == params[name].default
    with pytest.raises(RecipeError, match="loss.pixel_criterion must be one of 'l1', 'mse', 'charbonnier'"):
        recipe_from_dict({"loss": {"pixel_criterion": "l3"}}, "x.toml")



def test_model_scale_reaches_the_backbones_own_scale_argument():
    """EDSR calls its scale ``upscale``: model.scale alone sets it (the entry's scale_arg)."""
    from gradguide.train.build import build_generator

    r = recipe_from_dict(
        {"model": {"backbone": "edsr", "guidance": "lr", "scale": 2, "backbone_config": {"num_feat": 8, "num_block": 2}}}, "x.toml"
    ).validate()
    G = build_generator(r)
    assert G.backbone.upscale == 2 and G.scale == 2


def test_border_crops_reach_the_dataset_and_are_checked(tmp_path):
    import numpy as np
    from PIL import Image

    from gradguide.train.build import build_train_dataset
    from gradguide.train.recipe import apply_overrides, resolve_recipe

    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(hr / "a.png")
    r = apply_overrides(resolve_recipe("quickstart"), [f"data.hr={hr}", "data.crop=32", "data.border_crops=0.25"])
    assert build_train_dataset(r).border == 0.25
    with pytest.raises(RecipeError, match="data.border_crops"):
        apply_overrides(resolve_recipe("quickstart"), ["data.border_crops=2"]).validate()


def test_lr_from_reaches_the_dataset_and_is_checked(tmp_path):
    import numpy as np
    from PIL import Image

    from gradguide.train.build import build_train_dataset
    from gradguide.train.recipe import apply_overrides, resolve_recipe

    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(hr / "a.png")
    r = apply_overrides(resolve_recipe("quickstart"), [f"data.hr={hr}", "data.crop=32", "data.lr_from=crop"])
    assert build_train_dataset(r).lr_from == "crop"
    with pytest.raises(RecipeError, match="data.lr_from"):
        apply_overrides(resolve_recipe("quickstart"), ["data.lr_from=tile"]).validate()
    with pytest.raises(RecipeError, match="data.lr_from"):  # a paired LR folder has its own LR
        apply_overrides(resolve_recipe("quickstart"), [f"data.hr={hr}", f"data.lr={hr}", "data.lr_from=crop"]).validate()


def test_edge_pad_reaches_the_generator_and_is_checked():
    from gradguide.train.build import build_generator
    from gradguide.train.recipe import apply_overrides, resolve_recipe

    assert build_generator(resolve_recipe("default_x4")).edge_pad == resolve_recipe("default_x4").model.edge_pad
    r = apply_overrides(resolve_recipe("quickstart"), ["model.edge_pad=2"])
    r.validate()
    assert build_generator(r).edge_pad == 2
    with pytest.raises(RecipeError, match="model.edge_pad"):
        apply_overrides(resolve_recipe("quickstart"), ["model.edge_pad=-1"]).validate()
    with pytest.raises(RecipeError, match="model.edge_pad"):
        apply_overrides(resolve_recipe("quickstart"), ["model.edge_pad=2", "model.guidance=none"]).validate()
    with pytest.raises(RecipeError, match="model.edge_pad"):  # the named SPSR generator is not a wrap() model
        build_generator(apply_overrides(resolve_recipe("spsr_x4"), ["model.edge_pad=2", "model.backbone_config.nb=1", "model.backbone_config.nf=8", "model.backbone_config.gc=4"]))
