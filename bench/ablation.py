"""Equal-budget study of gradient guidance (the paper's Table 2, at a budget that fits).

One command trains and evaluates every arm, resuming whatever an interruption left::

    python bench/ablation.py run --budget gpu --jobs 12     # a CUDA machine (minutes)
    python bench/ablation.py run --budget cpu --jobs 1      # 2 CPU cores (many hours, in pieces)
    python bench/ablation.py report                         # docs/results.md + docs/results.json

A machine lent only for training: ``run --no-eval`` there, then ``pack --out DIR`` (tar
files of the compared snapshots, fp16, plus plan, logs and curves); unpack them here and
``run --eval-only`` with the same arguments evaluates and exports (bench/device_study.sh).

Every arm trains on the same data (SunHays80, x4, MATLAB-bicubic LR made once per whole
image), crop, batch, optimiser, iteration count and seeds. Arms, following Table 2:

* stage ``psnr``: PSNR pre-training (L1) of the study backbone, a small ESRGAN RRDBNet
  (nf=16, nb=6, gc=8), and of the FLOPs-matched deeper RRDBNet; PSNR-setting
  comparisons with and without guidance for RRDBNet and for EDSR (a non-RRDB backbone);
* stage ``gan`` (all from the PSNR weights of the first stage; the guided arms load them
  into the backbone and add a fresh branch and fusion):
  (a) ESRGAN objective; (b) + gradient losses only (w/o GB); (c) + gradient branch only
  (w/o GL); (d) full SPSR, paper fusion; (e) full SPSR, ``guidance="lr"``; (f) the
  FLOPs-matched control: an unguided RRDBNet made deeper until its FLOPs equal (e)'s,
  trained with (b)'s objective (everything but the branch);
* ``drift``: the colour/intensity drift of the old ``quickstart`` recipe, reproduced and
  fixed, with validation curves (Set5 PSNR-Y, PSNR-RGB, mean signed error per channel);
* ``default``: the bundled default model (``recipes/default_x4.toml``).

There are no VGG19 weights on these machines, so the perceptual term is dropped in
every arm alike, and every GAN arm's pixel weight is ``--gan-pixel`` (default 1.0, a
stated deviation from Eq. 10's 1e-2: without L_Per the GAN stage collapses in colour,
``bench/gan_pilot.py``). Evaluation: Set5, Set14, BSD68 under the full protocol
(:func:`gradguide.evaluate`), plus colour (CIEDE2000, PSNR-RGB) and border metrics.
Each arm's final generator is exported to ``bench/results/ablation/ARM.safetensors``
(fp16 storage). ``report`` writes docs/results.md and docs/results.json from the
evaluations alone: no number there is typed by hand.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = REPO / "runs" / "ablation"
EXPORT_DIR = REPO / "bench" / "results" / "ablation"
SCALE = 4

# the study backbone and its relatives
STUDY = dict(nf=16, nb=6, gc=8)
EDSR_CFG = dict(num_feat=48, num_block=8)
DEFAULT_CFG = dict(nf=64, nb=8, gc=32)


@dataclass(frozen=True)
class Budget:
    psnr_iters: int
    gan_iters: int
    default_iters: int
    drift_iters: int
    batch: int
    crop: int
    val_every: int
    drift_val_every: int
    warmup: int  # fusion-only iterations of the guided GAN arms (the paper: 5k of 500k)
    d_nf: int  # discriminator width (64 in the paper)
    eval_max_images: int = 0  # 0 = whole test sets
    eval_sets: tuple = ("Set5", "Set14", "BSD68")


BUDGETS = {
    # one H100, all arms at once (about 8 minutes)
    "gpu": Budget(psnr_iters=3000, gan_iters=3000, default_iters=10000, drift_iters=3000, batch=32, crop=128,
                  val_every=200, drift_val_every=100, warmup=100, d_nf=32),
    # 2 CPU cores, in the background, resumable (many hours)
    "cpu": Budget(psnr_iters=3000, gan_iters=1500, default_iters=6000, drift_iters=4000, batch=8, crop=96,
                  val_every=500, drift_val_every=250, warmup=150, d_nf=32),
    # one ~2 h piece on one CPU core (the other core training something else): crop 64, few iterations
    "session": Budget(psnr_iters=1200, gan_iters=250, default_iters=1000, drift_iters=1000, batch=8, crop=64,
                      val_every=200, drift_val_every=100, warmup=25, d_nf=32),
    # CI smoke: every arm, a couple of steps, two Set5 images
    "quick": Budget(psnr_iters=2, gan_iters=2, default_iters=2, drift_iters=2, batch=2, crop=32,
                    val_every=1, drift_val_every=1, warmup=1, d_nf=8, eval_max_images=2, eval_sets=("Set5",)),
}


@dataclass(frozen=True)
class Arm:
    name: str
    stage: str  # psnr | gan | drift | default
    title: str
    backbone: str  # registry name
    config: dict
    guidance: str  # none | lr | paper
    loss: dict
    seed: int = 0
    init: str = ""  # arm whose final generator initialises this one's backbone
    optim: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    export: bool = True


PSNR_LOSS = dict(pixel=1.0, perceptual=0.0, gan=0.0, gradient_pixel=0.0, gradient_gan=0.0, branch=0.0)
PSNR_GUIDED_LOSS = dict(PSNR_LOSS, gradient_pixel=0.1, branch=0.5)
# Eq. 10 weights without L_Per (no VGG19 weights here). ``run --gan-pixel`` replaces the
# pixel weight of every GAN arm alike: without L_Per, Eq. 10's 1e-2 leaves the GAN terms
# nothing to hold colour to, and the stage collapses even from a trained start
# (bench/gan_pilot.py, docs/results.md "GAN stage from a trained PSNR model")
EQ10_PIXEL = 0.01
GAN_PIXEL = 1.0  # the default of ``run --gan-pixel``: L1 at 1.0 stands in for the dropped L_Per
ESRGAN = dict(pixel=EQ10_PIXEL, perceptual=0.0, gan=0.005, gradient_pixel=0.0, gradient_gan=0.0, branch=0.0)
WO_GB = dict(ESRGAN, gradient_pixel=0.01, gradient_gan=0.005)
WO_GL = dict(ESRGAN, branch=0.5)
SPSR = dict(WO_GB, branch=0.5)
PSNR_OPTIM = dict(lr_g=2e-4, betas=[0.9, 0.99])
GAN_OPTIM = dict(lr_g=1e-4, lr_d=1e-4, betas=[0.9, 0.999])


def matched_depth(shape=(1, 3, 32, 32)) -> int:
    """The RRDBNet depth (study width) whose FLOPs come closest to the ``lr``-guided study
    model's (counted on the meta device: nothing is computed)."""
    import torch

    import gradguide
    from gradguide.flops import count_flops
    from gradguide_backbones.rrdb import RRDBNet

    def flops(m) -> int:
        return count_flops(m, torch.zeros(shape, device="meta"))

    with torch.device("meta"):
        target = flops(gradguide.wrap(RRDBNet(**STUDY), fusion="lr"))
        base = flops(RRDBNet(**STUDY))
        per_block = flops(RRDBNet(**{**STUDY, "nb": STUDY["nb"] + 1})) - base  # FLOPs are linear in nb
    return STUDY["nb"] + max(0, round((target - base) / per_block))


def arms(deep_nb: int, gan_pixel: float = EQ10_PIXEL) -> list[Arm]:
    """Every arm; ``gan_pixel`` is the pixel-loss weight of all GAN arms (Eq. 10: 1e-2)."""
    deep = dict(STUDY, nb=deep_nb)
    ESRGAN_LOSS, WO_GB_LOSS, WO_GL_LOSS, SPSR_LOSS = (dict(d, pixel=gan_pixel) for d in (ESRGAN, WO_GB, WO_GL, SPSR))
    out = [
        Arm("psnr_rrdb", "psnr", "RRDBNet, L1 (the shared PSNR start)", "rrdbnet", STUDY, "none", PSNR_LOSS, optim=PSNR_OPTIM),
        Arm("psnr_rrdb_deep", "psnr", f"RRDBNet nb={deep_nb} (FLOPs-matched), L1", "rrdbnet", deep, "none", PSNR_LOSS, optim=PSNR_OPTIM),
        Arm("psnr_rrdb_lr", "psnr", "RRDBNet + guidance (lr), L1 + gradient pixel + branch", "rrdbnet", STUDY, "lr",
            PSNR_GUIDED_LOSS, optim=PSNR_OPTIM),
        Arm("psnr_edsr", "psnr", "EDSR, L1", "edsr", EDSR_CFG, "none", PSNR_LOSS, optim=PSNR_OPTIM),
        Arm("psnr_edsr_lr", "psnr", "EDSR + guidance (lr), L1 + gradient pixel + branch", "edsr", EDSR_CFG, "lr",
            PSNR_GUIDED_LOSS, optim=PSNR_OPTIM),
    ]
    for seed in (0, 1):
        out += [
            Arm(f"a_esrgan_s{seed}", "gan", "(a) ESRGAN objective", "rrdbnet", STUDY, "none", ESRGAN_LOSS, seed, "psnr_rrdb", GAN_OPTIM),
            Arm(f"d_spsr_paper_s{seed}", "gan", "(d) SPSR, paper fusion", "rrdbnet", STUDY, "paper", SPSR_LOSS, seed, "psnr_rrdb", GAN_OPTIM),
            Arm(f"e_spsr_lr_s{seed}", "gan", "(e) SPSR, lr fusion", "rrdbnet", STUDY, "lr", SPSR_LOSS, seed, "psnr_rrdb", GAN_OPTIM),
            Arm(f"f_deep_matched_s{seed}", "gan", f"(f) RRDBNet nb={deep_nb}, FLOPs of (e), (b)'s objective", "rrdbnet", deep,
                "none", WO_GB_LOSS, seed, "psnr_rrdb_deep", GAN_OPTIM),
        ]
    out += [
        Arm("b_wo_gb_s0", "gan", "(b) + gradient losses only (w/o GB)", "rrdbnet", STUDY, "none", WO_GB_LOSS, 0, "psnr_rrdb", GAN_OPTIM),
        Arm("c_wo_gl_s0", "gan", "(c) + gradient branch only (w/o GL)", "rrdbnet", STUDY, "paper", WO_GL_LOSS, 0, "psnr_rrdb", GAN_OPTIM),
    ]
    # the old quickstart recipe (batch 4, crop 64, lr 5e-4, Adam betas 0.9/0.999) and its fixes
    qs = dict(nf=32, nb=6, gc=16)
    drift_data = dict(crop=64)
    drift_train = dict(batch_size=4)
    old = dict(lr_g=5e-4, betas=[0.9, 0.999])
    out += [
        Arm("drift_old", "drift", "quickstart as shipped: lr 5e-4, betas 0.9/0.999", "rrdbnet", qs, "lr", PSNR_GUIDED_LOSS,
            optim=old, train=drift_train, data=drift_data, export=False),
        Arm("drift_unguided", "drift", "same, no guidance (RRDBNet alone)", "rrdbnet", qs, "none", PSNR_LOSS,
            optim=old, train=drift_train, data=drift_data, export=False),
        Arm("drift_lr2e-4", "drift", "lr 2e-4, betas 0.9/0.999", "rrdbnet", qs, "lr", PSNR_GUIDED_LOSS,
            optim=dict(lr_g=2e-4, betas=[0.9, 0.999]), train=drift_train, data=drift_data, export=False),
        Arm("drift_fixed", "drift", "lr 2e-4, betas 0.9/0.99, EMA 0.999", "rrdbnet", qs, "lr", PSNR_GUIDED_LOSS,
            optim=dict(lr_g=2e-4, betas=[0.9, 0.99]), train=dict(drift_train, ema=0.999), data=drift_data, export=False),
        Arm("default_x4", "default", "bundled default: RRDBNet nf64 nb8 + guidance (lr), recipes/default_x4.toml", "rrdbnet",
            DEFAULT_CFG, "lr", PSNR_GUIDED_LOSS, optim=PSNR_OPTIM, train=dict(ema=0.999)),
    ]
    return out


# ----------------------------------------------------------------------------- recipes


def model_section(arm: Arm) -> dict:
    """The recipe's [model] table for an arm."""
    from gradguide.train.recipe import ModelConfig

    names = {f.name for f in dataclasses.fields(ModelConfig)}
    if "guidance" in names:
        return dict(backbone=arm.backbone, backbone_config=dict(arm.config), guidance=arm.guidance, scale=SCALE)
    # recipe schema before model.guidance existed
    if arm.guidance == "none" and arm.backbone == "rrdbnet":
        return dict(arch="rrdbnet", scale=SCALE, **arm.config)
    if arm.guidance == "none":
        raise SystemExit(f"{arm.name}: an unguided {arm.backbone} needs model.guidance (newer recipe schema)")
    return dict(arch="wrap", backbone=arm.backbone, backbone_config=dict(arm.config), fusion=arm.guidance, scale=SCALE)


def iterations(arm: Arm, b: Budget) -> int:
    return {"psnr": b.psnr_iters, "gan": b.gan_iters, "drift": b.drift_iters, "default": b.default_iters}[arm.stage]


def build_recipe(arm: Arm, b: Budget, work: Path, device: str, time_limit_s: float, init: str = ""):
    from gradguide.train.recipe import apply_overrides, load_recipe, recipe_from_dict

    n = iterations(arm, b)
    if arm.stage == "default":  # the shipped recipe itself; only the budget, device and logging change
        r = load_recipe(REPO / "recipes" / "default_x4.toml")
        sets = [f"train.device={device}", f"train.time_limit_s={float(max(time_limit_s, 0.0))}", "data.workers=0",
                "log.tensorboard=false", "log.progress=false"]
        if n != r.train.iterations:  # a smaller budget (cpu, quick): the same schedule, scaled
            f = n / r.train.iterations
            sets += [f"train.iterations={n}", f"optim.milestones=[{','.join(str(max(1, int(m * f))) for m in r.optim.milestones)}]",
                     f"train.checkpoint_every={max(1, int(r.train.checkpoint_every * f))}", f"val.every={b.val_every}",
                     f"data.crop={b.crop}", f"train.batch_size={b.batch}"]
        return apply_overrides(r, sets)
    val_every = b.drift_val_every if arm.stage == "drift" else b.val_every
    milestones = [max(1, int(n * f)) for f in (0.5, 0.75, 0.9)] if arm.stage in ("psnr", "default") else [max(1, n // 2)]
    if arm.stage == "drift":  # the shipped quickstart's schedule, as in the pilot that drifted (4000 its)
        milestones = [800, 1050] if n >= 1200 else [max(1, int(n * 0.667)), max(1, int(n * 0.875))]
    d = {
        "name": arm.name,
        "description": arm.title,
        "model": model_section(arm),
        "data": {"crop": b.crop, "augment": True, "workers": 0, "seed": arm.seed, **arm.data},
        "train": {
            "iterations": n,
            "batch_size": b.batch,
            "checkpoint_every": max(1, min(500, n)),
            "seed": arm.seed,
            "device": device,
            "warmup_iters": b.warmup if (arm.stage == "gan" and arm.guidance != "none") else 0,
            "time_limit_s": float(max(time_limit_s, 0.0)),
            **arm.train,
        },
        "optim": {"milestones": milestones, "gamma": 0.5, **arm.optim},
        "loss": {**arm.loss, "discriminator_nf": b.d_nf, "on_missing_vgg": "drop"},
        "val": {"every": val_every, "metric": "psnr_y", "mode": "max"},
        "log": {"every": 100, "tensorboard": False, "progress": False},
    }
    if init:
        d["model"]["pretrained"] = init
    return recipe_from_dict(d, source=f"bench/ablation.py:{arm.name}").validate()


def final_generator(work: Path, name: str) -> Path:
    """The generator an arm ends with: the EMA copy where the arm keeps one."""
    run = work / "runs" / name
    ema = run / "G_ema_latest.safetensors"
    return ema if ema.is_file() else run / "G_latest.safetensors"


def arm_iteration(work: Path, name: str) -> int:
    from safetensors import safe_open

    p = final_generator(work, name)
    if not p.is_file():
        return 0
    with safe_open(str(p), "pt") as fh:
        return int((fh.metadata() or {}).get("iteration", 0))


def snapshots(work: Path, name: str) -> dict[int, Path]:
    """``iteration -> generator file`` of the snapshots an arm kept (see :class:`Snapshot`)."""
    d = work / "runs" / name / "snaps"
    return {int(p.stem.split("_")[1]): p for p in sorted(d.glob("G_*.safetensors"))} if d.is_dir() else {}


def common_iteration(work: Path, names: list[str]) -> int:
    """The last iteration every arm in ``names`` has a snapshot of: arms of one stage are
    compared (and later stages initialised) there, so each got exactly the same number of
    iterations even when a time box stopped the slower ones earlier."""
    sets = [set(snapshots(work, n)) for n in names]
    common = set.intersection(*sets) if sets else set()
    return max(common) if common else 0


def stage_members(all_arms: list, stage: str) -> list[str]:
    return [a.name for a in all_arms if a.stage == stage]


def generator_at(work: Path, name: str, iteration: int) -> Path:
    return snapshots(work, name)[iteration]


def _decode_pair(f: Path):
    import numpy as np

    from gradguide.data.imresize import imresize
    from gradguide.imageio import read_image, to_uint8_hwc

    hr = to_uint8_hwc(read_image(f).rgb)
    hr = np.ascontiguousarray(hr[: hr.shape[0] // SCALE * SCALE, : hr.shape[1] // SCALE * SCALE])
    return f.stem, hr, np.ascontiguousarray(imresize(hr, 1.0 / SCALE))


def data_cache(work: Path, data_root: Path) -> Path:
    """SunHays80 decoded once: HR cropped to a multiple of 4, LR by MATLAB bicubic of the
    whole uint8 image (as DIV2K's stored LR), both uint8 ``(H, W, 3)``."""
    from concurrent.futures import ProcessPoolExecutor

    import torch

    path = work / "cache" / f"sunhays80_x{SCALE}.pt"
    if path.is_file():
        return path
    folder = data_root / "train" / "SunHays80"
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"{folder}: no training images")
    import multiprocessing

    # spawn, not fork: a forked child of a process whose OpenMP threads have run (torch)
    # can deadlock in them
    with ProcessPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")) as pool:
        items = list(pool.map(_decode_pair, files))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"names": [n for n, _, _ in items], "hr": [torch.from_numpy(h) for _, h, _ in items],
                "lr": [torch.from_numpy(lr) for _, _, lr in items]}, tmp)
    os.replace(tmp, path)
    return path


def train_dataset(cache: Path, arm: Arm, b: Budget):
    import torch

    from gradguide.data.datasets import HRFolderDataset, PairedFolderDataset

    c = torch.load(cache, weights_only=True)
    hr = [(n, x.numpy()) for n, x in zip(c["names"], c["hr"])]
    crop, border = arm.data.get("crop", b.crop), arm.data.get("border_crops", 0.0)
    if arm.data.get("lr_from", "image") == "crop":  # each LR patch from its HR patch alone
        return HRFolderDataset(hr, SCALE, crop=crop, augment=True, seed=arm.seed, cache=True, border=border, lr_from="crop")
    lr = [(n, x.numpy()) for n, x in zip(c["names"], c["lr"])]
    return PairedFolderDataset(lr, hr, SCALE, crop=crop, augment=True, seed=arm.seed, cache=True, border=border)


# ----------------------------------------------------------------------------- curves


class Curve:
    """At every validation: the trainer's own figures (``val.colour``: Set5 PSNR-Y, SSIM-Y,
    PSNR-RGB, CIEDE2000 and the mean signed error per RGB channel, where a colour or
    intensity drift shows, not in PSNR-Y's trend alone), appended as JSON lines to
    ``curve.jsonl`` in the run folder. Nothing is computed twice."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, trainer) -> None:
        m = trainer.last_val
        if m and int(m.get("iteration", -1)) == trainer.iteration and "ciede2000" in m:
            self.write(m)

    def write(self, m: dict) -> None:
        """One row from a validation's figures (``Trainer.validate()`` with ``val.colour``)."""
        rec = dict(iteration=int(m["iteration"]), psnr_y=m["psnr_y"], psnr_rgb=m["psnr_rgb"], ciede2000=m["ciede2000"],
                   ssim_y=m["ssim_y"], bias_rgb=[m["bias_r"], m["bias_g"], m["bias_b"]])
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")


class Snapshot:
    """Every ``every`` iterations (and at the end), the generator that is evaluated (the EMA
    copy where there is one) is kept as ``snaps/G_<iteration>.safetensors``."""

    def __init__(self, every: int, folder: Path) -> None:
        self.every, self.folder = every, folder

    def save(self, trainer) -> None:
        from gradguide.checkpoints import save

        self.folder.mkdir(parents=True, exist_ok=True)
        save(trainer.eval_model(), self.folder / f"G_{trainer.iteration:07d}.safetensors",
             metadata={"iteration": str(trainer.iteration), "recipe": trainer.recipe.name})

    def __call__(self, trainer) -> None:
        if trainer.iteration % self.every == 0:
            self.save(trainer)


# ----------------------------------------------------------------------------- tasks


def train_arm(arm: Arm, b: Budget, work: Path, data_root: Path, device: str, deadline: Optional[float]) -> None:
    from gradguide.data.datasets import ValidationDataset
    from gradguide.train.trainer import STATE_FILE, Trainer

    out = work / "runs" / arm.name
    n = iterations(arm, b)
    if arm_iteration(work, arm.name) >= n:
        return
    left = (deadline - time.time()) if deadline else 0.0
    if deadline and left < 10:
        print(f"{arm.name}: no time left in its time box; run again to continue", flush=True)
        return
    plan = json.loads((work / "plan.json").read_text())
    init = ""
    if arm.init:  # the shared start: the earlier stage's arm at that stage's common iteration
        it = plan["init_iteration"].get(arm.init, 0)
        if not it:
            raise SystemExit(f"{arm.name}: its start {arm.init!r} has no snapshot at an iteration that every PSNR arm reached "
                             f"(snapshots every val_every iterations): give the PSNR stage more time (--psnr-until-s) and run again")
        init = str(generator_at(work, arm.init, it))
    recipe = build_recipe(arm, b, work, device, left if deadline else 0.0, init)
    val = ValidationDataset(data_root / "test" / "Set5", SCALE)
    curve = Curve(out / "curve.jsonl")
    snap = Snapshot(recipe.val.every, out / "snaps")
    resume = (out / STATE_FILE).is_file()
    if not resume and (out / "curve.jsonl").exists():
        (out / "curve.jsonl").unlink()
    t0 = time.time()
    trainer = Trainer(recipe, out, resume=resume, train_dataset=train_dataset(data_cache(work, data_root), arm, b),
                      val_dataset=val, callbacks=[curve, snap])
    try:
        res = trainer.fit()
        snap.save(trainer)  # the last iteration reached (a time box may stop between snapshots)
    finally:
        trainer.close()
    timing = out / "timing.json"
    prev = json.loads(timing.read_text()) if timing.is_file() else {"seconds": 0.0, "pieces": []}
    prev["seconds"] += time.time() - t0
    prev["pieces"].append({"device": device_name(device), "seconds": time.time() - t0, "until": res.iteration})
    timing.write_text(json.dumps(prev, indent=1))
    print(f"{arm.name}: iteration {res.iteration}/{n} in {time.time() - t0:.0f} s" + (f" ({res.stopped})" if res.stopped else ""), flush=True)


def evaluated_generator(work: Path, name: str) -> tuple[Optional[Path], int]:
    """The file an arm is evaluated (and exported) at: its stage's common iteration."""
    plan = json.loads((work / "plan.json").read_text())
    it = plan.get("eval_iteration", {}).get(name, 0)
    if not it:
        return None, 0
    return generator_at(work, name, it), it


def eval_arm(name: str, b: Budget, work: Path, data_root: Path, device: str) -> None:
    import torch

    import gradguide
    from gradguide.eval.protocol import METRICS
    from gradguide.eval.report import write_json

    out = work / "eval" / f"{name}.json"
    if name == "bicubic":
        model, it = "bicubic", 0
    else:
        path, it = evaluated_generator(work, name)
        if path is None:
            return
        model = str(path)
    if out.is_file() and json.loads(out.read_text()).get("iteration") == it:
        return
    torch.backends.cudnn.allow_tf32 = False  # evaluation in full fp32 on a GPU too
    torch.backends.cuda.matmul.allow_tf32 = False
    sets = [data_root / "test" / s for s in b.eval_sets]
    metrics = [m for m in METRICS if m not in ("PI", "LPIPS")]
    rep = gradguide.evaluate({name: model}, sets, scale=SCALE, metrics=metrics, device=device,
                             max_images=b.eval_max_images or None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    write_json(rep, tmp)
    d = json.loads(tmp.read_text())
    d["iteration"] = it
    tmp.write_text(json.dumps(d))
    os.replace(tmp, out)
    print(f"eval {name} (iteration {it}): done", flush=True)


def save_fp16(src: Path, out: Path, extra: Optional[dict] = None) -> Path:
    """Copy a generator file with fp16 storage; its metadata (plus ``extra``) is kept, so it
    loads with gradguide.load like the original."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: (t.half() if t.is_floating_point() else t) for k in fh.keys() for t in [fh.get_tensor(k)]}
    meta.update(storage="fp16", **(extra or {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=dict(sorted(meta.items())))
    return out


def export_arm(name: str, work: Path, dest: Path) -> Optional[Path]:
    """The evaluated generator as fp16 safetensors (metadata kept: it loads with gradguide.load)."""
    src, _ = evaluated_generator(work, name)
    if src is None:  # not evaluated yet: the latest snapshot
        snaps = snapshots(work, name)
        if not snaps:
            return None
        src = snaps[max(snaps)]
    return save_fp16(src, dest / f"{name}.safetensors")


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def settle_stage(work: Path, all_arms: list, stage: str, what: str) -> int:
    """Record a stage's common iteration (see :func:`common_iteration`) in the plan under
    ``what`` (``init_iteration`` or ``eval_iteration``) for each of its arms; returns it."""
    plan_path = work / "plan.json"
    names = stage_members(all_arms, stage)
    it = common_iteration(work, names) if stage != "default" else 0
    if stage != "default" and not it:
        reached = {n: max(snapshots(work, n), default=0) for n in names}
        print(f"stage {stage}: no iteration that every arm has a snapshot of (reached: {reached}); "
              f"its arms are not compared or exported until a longer run", flush=True)
    p = json.loads(plan_path.read_text())
    for n in names:
        p[what][n] = it if stage != "default" else max(snapshots(work, n), default=0)
    plan_path.write_text(json.dumps(p, indent=1))
    return it


def pack(work: Path, out: Path, chunk_bytes: int = 15_000_000) -> list[Path]:
    """A trained work folder in a few tar files of at most ``chunk_bytes`` each (the files a
    machine that only trains can hand back): the plan, logs, curves, timings, recipes and,
    per arm, only the snapshot its stage is compared at (its common iteration), stored fp16.
    ``run --eval-only --work DIR`` on the unpacked folder evaluates and exports them; the
    fp16 file is what is exported anyway, so the figures are those of the exported file."""
    import tarfile
    import tempfile

    plan = json.loads((work / "plan.json").read_text())
    all_arms = [Arm(**a) for a in plan["arms"]]
    keep: dict[str, int] = {}
    for stage in dict.fromkeys(a.stage for a in all_arms):
        it = settle_stage(work, all_arms, stage, "eval_iteration")
        for n in stage_members(all_arms, stage):
            keep[n] = it or max(snapshots(work, n), default=0)
    small = [p for p in sorted(work.rglob("*")) if p.is_file() and p.suffix in (".json", ".jsonl", ".log", ".toml", ".txt")
             and "cache" not in p.relative_to(work).parts]
    out.mkdir(parents=True, exist_ok=True)
    files: list[tuple[Path, str]] = [(p, str(p.relative_to(work))) for p in small]
    tmp = Path(tempfile.mkdtemp(prefix="ablation-pack-"))
    for name, it in keep.items():
        snaps = snapshots(work, name)
        if it in snaps:
            rel = snaps[it].relative_to(work)
            files.append((save_fp16(snaps[it], tmp / rel), str(rel)))
    chunks: list[list[tuple[Path, str]]] = [[]]
    size = 0
    for f, rel in files:
        n = f.stat().st_size + 1024
        if chunks[-1] and size + n > chunk_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append((f, rel))
        size += n
    written = []
    for i, chunk in enumerate(chunks):
        path = out / f"study{i}.tar"
        with tarfile.open(path, "w") as t:
            for f, rel in chunk:
                t.add(str(f), arcname=rel)
        written.append(path)
    print(f"packed {len(files)} files into {len(written)} tar file(s) in {out}; kept snapshots: {keep}", flush=True)
    return written


# ----------------------------------------------------------------------------- scheduler


@dataclass
class Task:
    key: str
    argv: list
    deps: tuple = ()
    before: Optional[object] = None  # called in the scheduler just before the task starts
    not_before: float = 0.0  # absolute time before which it does not start
    proc: Optional[subprocess.Popen] = None


def run(args) -> None:
    b = BUDGETS[args.budget]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root)
    t0 = time.time()
    if not args.eval_only:
        data_cache(work, data_root)
    deep = matched_depth()
    all_arms = [a for a in arms(deep, args.gan_pixel) if not args.only or a.name in args.only]
    plan_path = work / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else {}
    before = plan.get("gan_pixel", EQ10_PIXEL) if plan else args.gan_pixel
    started = [a.name for a in all_arms if a.stage == "gan" and arm_iteration(work, a.name)]
    if before != args.gan_pixel and started:
        raise SystemExit(f"--gan-pixel {args.gan_pixel:g}: this work folder's GAN arms ({', '.join(started)}) were trained with "
                         f"pixel weight {before:g}; pass --gan-pixel {before:g} to resume them, or use a new --work")
    invoked = "python bench/ablation.py " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["run"] else ""
    # an evaluation of what another machine trained keeps the training command and adds its own
    plan.update({"eval_command": invoked} if args.eval_only else {"command": invoked})
    plan.update({"budget": args.budget, "budget_values": dataclasses.asdict(b), "deep_nb": deep, "gan_pixel": args.gan_pixel,
                 "arms": [dataclasses.asdict(a) for a in all_arms]})
    plan.setdefault("init_iteration", {})
    plan.setdefault("eval_iteration", {})
    plan_path.write_text(json.dumps(plan, indent=1))

    def box(stage: str) -> float:  # absolute end of a stage's time box (0: none)
        s = {"psnr": args.psnr_until_s, "drift": args.psnr_until_s, "gan": args.gan_until_s, "default": args.gan_until_s}[stage]
        return t0 + s if s else 0.0

    common = ["--work", str(work), "--budget", args.budget, "--data-root", str(data_root), "--device", args.device]
    tasks: list[Task] = []
    order = {"default": 0, "psnr": 1, "drift": 2, "gan": 3}  # longest first; the PSNR starts before what waits on them
    train = not args.eval_only
    for a in sorted(all_arms, key=lambda a: order[a.stage]) if train else ():
        deps = tuple(f"train:{n}" for n in stage_members(all_arms, "psnr")) if a.init else ()
        before = (lambda: settle_stage(work, all_arms, "psnr", "init_iteration")) if a.init else None
        head = t0 + args.default_head_start_s if a.stage in ("psnr", "gan") else 0.0  # the default model first
        tasks.append(Task(f"train:{a.name}", ["_train", a.name, "--deadline", str(box(a.stage)), *common], deps, before, head))
    for a in all_arms if not args.no_eval else ():
        if a.stage == "drift":
            continue  # judged by its validation curves
        deps = tuple(f"train:{n}" for n in stage_members(all_arms, a.stage)) if train else ()
        tasks.append(Task(f"eval:{a.name}", ["_eval", a.name, *common], deps, (lambda st=a.stage: settle_stage(work, all_arms, st, "eval_iteration"))))
    if not args.no_eval:
        tasks.append(Task("eval:bicubic", ["_eval", "bicubic", *common]))
    _schedule(tasks, args.jobs, work, args.threads)
    for a in all_arms:
        if a.export and not args.no_export and not args.no_eval:
            export_arm(a.name, work, Path(args.export_dir))
    print(f"ablation: {len(all_arms)} arms, {time.time() - t0:.0f} s; `python bench/ablation.py report` writes the docs", flush=True)


def _schedule(tasks: list[Task], jobs: int, work: Path, threads: int = 0) -> None:
    """Run ``tasks`` as subprocesses, at most ``jobs`` at once, each after its ``deps``
    (``jobs <= 0``: one after another in this process)."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if jobs <= 0:
        for t in tasks:
            if t.before:
                t.before()
            main(t.argv)
        return
    threads = threads or max(1, (os.cpu_count() or 2) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    pending, running, finished = list(tasks), [], set()
    while pending or running:
        for t in list(running):
            if t.proc.poll() is not None:
                running.remove(t)
                finished.add(t.key)
                if t.proc.returncode:
                    print(f"{t.key}: exited {t.proc.returncode} (see {logs / (t.key.replace(':', '_') + '.log')})", flush=True)
        for t in list(pending):
            if len(running) >= jobs:
                break
            if all(d in finished for d in t.deps) and time.time() >= t.not_before:
                pending.remove(t)
                if t.before:
                    t.before()
                log = open(logs / (t.key.replace(":", "_") + ".log"), "a")
                t.proc = subprocess.Popen([sys.executable, __file__, *t.argv], stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append(t)
        time.sleep(0.5)


# ----------------------------------------------------------------------------- report


def _mean_spread(vals: list) -> tuple:
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    return m, (max(vals) - min(vals)) / 2 if len(vals) > 1 else None


METRIC_COLS = ("PSNR", "SSIM", "NIQE", "GMSD", "GradL1", "CIEDE2000", "PSNR-RGB", "PSNR-frame8", "PSNR-inner8")
LOWER = {"NIQE", "GMSD", "GradL1", "CIEDE2000"}


def read_curve(path: Path) -> list[dict]:
    """The validation rounds of one ``curve.jsonl`` (see :class:`Curve`)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect(work: Path) -> dict:
    plan = json.loads((work / "plan.json").read_text())
    arms_ = [Arm(**a) for a in plan["arms"]]
    groups: dict = {}
    for a in arms_:
        base = a.name.rsplit("_s", 1)[0] if a.stage == "gan" else a.name
        groups.setdefault(base, []).append(a)
    evals = {}
    for p in sorted((work / "eval").glob("*.json")):
        evals[p.stem] = json.loads(p.read_text())
    out = {"budget": plan["budget"], "budget_values": plan["budget_values"], "deep_nb": plan["deep_nb"], "groups": {}, "arms": {}}
    for name, d in evals.items():
        means = {ds: per[name]["mean"] for ds, per in d["datasets"].items()}
        timing = work / "runs" / name / "timing.json"
        out["arms"][name] = {"iteration": d.get("iteration", 0), "means": means, "notes": d.get("notes", []),
                             "timing": json.loads(timing.read_text()) if timing.is_file() else None}
    for base, members in groups.items():
        rows = {}
        names = [m.name for m in members if m.name in out["arms"]]
        if not names:
            continue
        for ds in out["arms"][names[0]]["means"]:
            rows[ds] = {k: _mean_spread([out["arms"][n]["means"][ds].get(k) for n in names]) for k in METRIC_COLS}
        out["groups"][base] = {"title": members[0].title, "stage": members[0].stage, "seeds": [m.seed for m in members if m.name in names],
                               "arms": names, "iterations": [out["arms"][n]["iteration"] for n in names], "means": rows}
    curves = {}
    for a in arms_:
        c = work / "runs" / a.name / "curve.jsonl"
        if c.is_file():
            curves[a.name] = read_curve(c)
    out["curves"] = curves
    out["machine"] = plan.get("machine")
    return out


def _fmt(v, k) -> str:
    if v[0] is None:
        return "n/a"
    f = "{:.3f}" if k.startswith("PSNR") else "{:.4f}"
    s = f.format(v[0])
    return s + (f" ± {f.format(v[1])}" if v[1] is not None else "")


def conclusions(res: dict) -> list[str]:
    """Sentences the numbers support, decided by rules stated in each sentence."""
    g = res["groups"]
    out = []

    def m(name, ds, k):
        return g[name]["means"][ds][k] if name in g and ds in g[name]["means"] else (None, None)

    def diff_line(x, y, label, k, ds):
        (a, sa), (b_, sb) = m(x, ds, k), m(y, ds, k)
        if a is None or b_ is None:
            return None
        noise = (sa or 0) + (sb or 0)
        d = a - b_
        better = (d < 0) if k in LOWER else (d > 0)
        if sa is None and sb is None:  # one seed each: nothing to judge the difference against
            return (f"{label}, {ds} {k}: {a:.4f} vs {b_:.4f} ({d:+.4f}; one seed each, so not tested against seed noise): "
                    + ("better" if better else "worse") + " in this run")
        if abs(d) <= noise:
            verdict = "no measurable difference (within the seed spread)"
        else:
            verdict = "better" if better else "worse"
        return f"{label}, {ds} {k}: {a:.4f} vs {b_:.4f} ({d:+.4f}; seed spread {noise:.4f}): {verdict}"

    for ds in ("BSD68", "Set14", "Set5"):
        for k in ("GMSD", "GradL1", "PSNR", "NIQE"):
            for x, lab in (("d_spsr_paper", "(d) paper-fusion SPSR vs (a) ESRGAN"), ("e_spsr_lr", "(e) lr-fusion SPSR vs (a) ESRGAN"),
                           ("e_spsr_lr", "(e) vs (f) the FLOPs-matched deeper network"), ("e_spsr_lr", "(e) lr fusion vs (d) paper fusion")):
                y = "a_esrgan" if "(a)" in lab else ("f_deep_matched" if "(f)" in lab else "d_spsr_paper")
                line = diff_line(x, y, lab, k, ds)
                if line:
                    out.append(line)
    bic = res["arms"].get("bicubic")
    gan = [n for n, gr in g.items() if gr["stage"] == "gan"]
    if bic and gan:  # a GAN stage that lost colour everywhere says nothing about guidance
        ds = "BSD68" if "BSD68" in bic["means"] else next(iter(bic["means"]))
        ref = bic["means"][ds].get("CIEDE2000")
        vals = {n: m(n, ds, "CIEDE2000")[0] for n in gan}
        if ref and vals and all(v is not None and v > 2 * ref for v in vals.values()):
            out.insert(0, f"Every GAN arm lost colour fidelity: {ds} CIEDE2000 {min(vals.values()):.1f} to {max(vals.values()):.1f} "
                          f"against bicubic's {ref:.1f}. At this budget the GAN stage collapsed for every objective, "
                          "so its comparisons below say nothing about gradient guidance.")
    if bic and "psnr_rrdb" in g:  # where the shared start stands: the GAN arms inherit it
        for ds in ("BSD68", "Set14", "Set5"):
            a, _ = m("psnr_rrdb", ds, "PSNR")
            b_ = bic["means"].get(ds, {}).get("PSNR")
            if a is not None and b_ is not None:
                out.append(f"The shared PSNR start (psnr_rrdb) against bicubic, {ds} PSNR: {a:.3f} vs {b_:.3f} ({a - b_:+.3f} dB): "
                           + ("above bicubic" if a > b_ else "still below bicubic at this budget, so every GAN arm starts from an "
                              "undertrained network"))
    for x, y, lab in (("psnr_rrdb_lr", "psnr_rrdb", "PSNR setting, RRDBNet guided vs plain"),
                      ("psnr_rrdb_lr", "psnr_rrdb_deep", "PSNR setting, RRDBNet guided vs FLOPs-matched deeper"),
                      ("psnr_edsr_lr", "psnr_edsr", "PSNR setting, EDSR guided vs plain")):
        for ds in ("BSD68",):
            for k in ("PSNR", "GMSD", "GradL1"):
                line = diff_line(x, y, lab, k, ds)
                if line:
                    out.append(line)
    return out


def drift_findings(res: dict) -> list[str]:
    """What the validation curves show, per arm: the largest PSNR-Y drop between two
    consecutive validations, what SSIM-Y and the mean colour error did there, and the
    mean |signed RGB error| of the last validation."""
    out = []
    for name, rows in res["curves"].items():
        if len(rows) < 2:
            continue
        drops = [(rows[i]["psnr_y"] - rows[i + 1]["psnr_y"], i) for i in range(len(rows) - 1)]
        d, i = max(drops)
        a, b = rows[i], rows[i + 1]
        bias = sum(abs(x) for x in rows[-1]["bias_rgb"]) / 3
        line = (f"`{name}`: largest PSNR-Y drop {d:.2f} dB between iterations {a['iteration']} and {b['iteration']} "
                f"(SSIM-Y {b['ssim_y'] - a['ssim_y']:+.4f}, mean |RGB error| {sum(abs(x) for x in a['bias_rgb']) / 3:.4f} -> "
                f"{sum(abs(x) for x in b['bias_rgb']) / 3:.4f}); last validation (iteration {rows[-1]['iteration']}): "
                f"PSNR-Y {rows[-1]['psnr_y']:.2f} dB, mean |RGB error| {bias:.4f}") if d > 0 else (
                f"`{name}`: PSNR-Y never fell between validations; last (iteration {rows[-1]['iteration']}): "
                f"{rows[-1]['psnr_y']:.2f} dB, mean |RGB error| {bias:.4f}")
        out.append(line)
    return out


def curves_from(work: Path, names: Optional[Callable[[str], bool]] = None) -> dict:
    """Every arm's Set5 validation curve under ``work/runs`` (``names`` filters), with the
    device its timing records."""
    out = {}
    for c in sorted((work / "runs").glob("*/curve.jsonl")):
        name = c.parent.name
        if names and not names(name):
            continue
        t = c.parent / "timing.json"
        devices = sorted({p["device"] for p in json.loads(t.read_text())["pieces"]}) if t.is_file() else []
        out[name] = {"rows": read_curve(c), "devices": devices}
    return out


def write_section(path: Path, name: str, lines: list[str], *, first: bool = False) -> None:
    """Write ``lines`` as the section ``name`` of a markdown file (between
    ``<!-- name:begin -->`` and ``<!-- name:end -->``), keeping the sections other scripts
    and runs own: an existing ``name`` section is replaced in place, a new one goes first
    (``first``) or last."""
    import re

    sections: list[tuple[str, str]] = []
    if path.is_file():
        for m in re.finditer(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->\n?", path.read_text(encoding="utf-8"), re.S):
            sections.append((m.group(1), m.group(0)))
    text = f"<!-- {name}:begin -->\n" + "\n".join(lines) + f"\n<!-- {name}:end -->\n"
    names = [n for n, _ in sections]
    if name in names:
        sections[names.index(name)] = (name, text)
    else:
        sections.insert(0 if first else len(sections), (name, text))
    path.write_text("\n".join(t for _, t in sections), encoding="utf-8")


def section_titles(path: Path) -> list[tuple[str, str]]:
    """``(name, first heading)`` of each ``<!-- name:begin -->`` section of a markdown file."""
    import re

    if not path.is_file():
        return []
    out = []
    for m in re.finditer(r"<!-- ([\w-]+):begin -->\n(.*?)<!-- \1:end -->", path.read_text(encoding="utf-8"), re.S):
        head = next((ln.lstrip("#").strip() for ln in m.group(2).splitlines() if ln.startswith("#")), "")
        out.append((m.group(1), head))
    return out


def gan_weights_sentence(plan_arms: list[dict]) -> str:
    """The GAN stage's loss weights as the plan recorded them (full SPSR arm), against Eq. 10."""
    full = next((a["loss"] for a in plan_arms if a["name"].startswith("e_spsr_lr")), None)
    if full is None:
        return "No GAN arm in this run."
    w = (f"pixel {full['pixel']:g}, GAN {full['gan']:g}, gradient pixel {full['gradient_pixel']:g}, "
         f"gradient GAN {full['gradient_gan']:g}, branch {full['branch']:g}")
    if full["pixel"] == EQ10_PIXEL:
        return f"GAN-stage loss weights otherwise follow Eq. 10 ({w})."
    return (f"GAN-stage loss weights: {w}. Deviation from Eq. 10: the pixel weight is {full['pixel']:g} instead of "
            f"{EQ10_PIXEL:g} in every GAN arm alike, standing in for the dropped L_Per; with {EQ10_PIXEL:g} and no L_Per the "
            f"GAN stage collapses in colour even from a trained start (section \"GAN stage from a trained PSNR model\").")


def report(args) -> None:
    work = Path(args.work)
    res = collect(work)
    if args.curves_from:  # the drift study's curves from the run that made them (another work folder)
        src = Path(args.curves_from)
        extra = curves_from(src, lambda n: n.startswith("drift") or n == "default_x4")
        res["curves_source"] = {"work": os.path.relpath(src.resolve(), REPO),
                                "devices": sorted({d for c in extra.values() for d in c["devices"]})}
        for name, c in extra.items():
            res["curves"].setdefault(name, c["rows"])
    res["conclusions"] = conclusions(res)
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    section = args.section
    main_section = section == "ablation"
    js = "results.json" if main_section else f"results-{section}.json"
    (docs / js).write_text(json.dumps(res, indent=1, allow_nan=False))
    ran_on = sorted({p["device"] for a in res["arms"].values() if a["timing"] for p in a["timing"]["pieces"]})
    L = ["# Results: an equal-budget study of gradient guidance" if main_section else
         f"# Results of another run: budget `{res['budget']}` on {', '.join(ran_on) or 'an unknown machine'} "
         f"(`{os.path.relpath(work.resolve(), REPO)}`)", "",
         "Written by `python bench/ablation.py report` from the evaluations that `python bench/ablation.py run` made; "
         "no number here is typed by hand. The same numbers, per image set and arm, are in "
         f"[{js}]({js}).", ""]
    others = [(n, h) for n, h in section_titles(docs / "results.md") if n != section] if main_section else []
    if others:
        L += ["Other runs and studies in this file, each in its own section below, written by the command at its end:", ""]
        L += [f"- `{n}`: {h}" for n, h in others] + [""]
    bv = res["budget_values"]
    plan_arms = json.loads((work / "plan.json").read_text())["arms"]
    status = []
    for stage in ("psnr", "gan", "default"):
        names = [a["name"] for a in plan_arms if a["stage"] == stage]
        if not names:
            continue
        done = [n for n in names if n in res["arms"]]
        status.append(f"{stage}: {len(done)} of {len(names)} arms evaluated")
    L += ["**Status of this run:** " + "; ".join(status) + ". Arms without an evaluation are listed under "
          "\"Not evaluated\"; no comparison is drawn for them.", ""]
    L += ["## Budget and setting", "",
          f"- Budget preset `{res['budget']}`: PSNR stage {bv['psnr_iters']} iterations, GAN stage {bv['gan_iters']} iterations "
          f"(guided arms: the first {bv['warmup']} train the fusion only), batch {bv['batch']}, HR crop {bv['crop']}, "
          f"discriminators VGG-128 at width {bv['d_nf']}.",
          f"- Data: SunHays80 (80 photos), x4, LR by MATLAB bicubic of each whole image; flips/rotations. Same seeds, "
          f"optimiser and iteration count for every arm of a stage.",
          f"- Study backbone: RRDBNet nf={STUDY['nf']}, nb={STUDY['nb']}, gc={STUDY['gc']}; the FLOPs-matched control (f) "
          f"is RRDBNet nb={res['deep_nb']}.",
          "- The perceptual term (VGG19) is dropped in every arm alike: no VGG19 weights exist on these machines. "
          + gan_weights_sentence(plan_arms),
          "- Evaluation: the full protocol of `gradguide eval` (x4, uint8, Y channel, border crop 4); LPIPS is absent "
          "(no AlexNet weights here) and PI needs Ma et al.'s model. Mean ± half the range over seeds where an arm has two.",
          ""]
    machines = sorted({p["device"] for a in res["arms"].values() if a["timing"] for p in a["timing"]["pieces"]})
    L += [f"- Machine(s): {', '.join(machines) or 'unknown'}.", ""]
    L += ["## Arms and wall time", "",
          "`compared at`: the iteration the arm is evaluated at, its stage's common one (every arm of a stage is compared "
          "after the same number of iterations); `reached`: where the arm's time box stopped it.", "",
          "| arm | what | compared at | reached | wall s |", "|---|---|---|---|---|"]
    for base, gr in res["groups"].items():
        for n, it in zip(gr["arms"], gr["iterations"]):
            t = res["arms"][n]["timing"]
            reached = t["pieces"][-1]["until"] if t and t.get("pieces") else "n/a"
            L.append(f"| `{n}` | {gr['title']} | {it} | {reached} | " + (f"{t['seconds']:.0f} |" if t else "n/a |"))
    L.append("")
    bic = res["arms"].get("bicubic")
    for stage, title in (("gan", "GAN setting (Table 2)"), ("psnr", "PSNR setting"), ("default", "Bundled default model")):
        if not any(a["stage"] == stage for a in plan_arms):
            continue
        L += [f"## {title}", ""]
        for ds in BUDGETS[res["budget"]].eval_sets:
            L += [f"### {ds}", "", "| arm | seeds | " + " | ".join(f"{k} {'↓' if k in LOWER else '↑'}" for k in METRIC_COLS) + " |",
                  "|---|---|" + "---|" * len(METRIC_COLS)]
            if bic:
                L.append("| bicubic | - | " + " | ".join(_fmt((bic["means"][ds].get(k), None), k) for k in METRIC_COLS) + " |")
            for base, gr in res["groups"].items():
                if gr["stage"] != stage or ds not in gr["means"]:
                    continue
                L.append(f"| {gr['title']} | {len(gr['seeds'])} | " + " | ".join(_fmt(gr["means"][ds][k], k) for k in METRIC_COLS) + " |")
            L.append("")
    tabled = [n for n in res["curves"] if n.startswith("drift") or n == "default_x4"]  # curves given in full
    if tabled:
        L += ["## Validation curves (Set5, every validation round)", "",
              "The old quickstart recipe's drift, reproduced and fixed. `bias` is the mean signed error of R, G, B "
              "(SR - HR, in [0, 1] units): a global colour or intensity drift shows there while SSIM-Y hardly moves.", ""]
        if res.get("curves_source"):
            cs = res["curves_source"]
            L += [f"These curves come from the run in `{cs['work']}` ({', '.join(cs['devices']) or 'device unknown'}), "
                  "not from the run whose tables are above.", ""]
        for name in tabled:
            rows = res["curves"][name]
            L += [f"### `{name}`", "", "| iteration | PSNR-Y | SSIM-Y | PSNR-RGB | CIEDE2000 | bias R | bias G | bias B |", "|---|---|---|---|---|---|---|---|"]
            for r in rows:
                L.append(f"| {r['iteration']} | {r['psnr_y']:.3f} | {r['ssim_y']:.4f} | {r['psnr_rgb']:.3f} | {r['ciede2000']:.3f} | "
                         + " | ".join(f"{x:+.4f}" for x in r["bias_rgb"]) + " |")
            L.append("")
    missing = [a for a in json.loads((work / "plan.json").read_text())["arms"] if a["name"] not in res["arms"] and a["stage"] != "drift"]
    if missing:
        L += ["## Not evaluated", "",
              "These arms have no evaluation: their stage has no iteration that every arm of it reached (the arms of a "
              "stage are only compared at one common iteration), or they did not train. `run` again, with longer time "
              "boxes, continues them.", "", "| arm | what | iterations reached |", "|---|---|---|"]
        for a in missing:
            t = work / "runs" / a["name"] / "timing.json"
            reached = json.loads(t.read_text())["pieces"][-1]["until"] if t.is_file() else 0
            L.append(f"| `{a['name']}` | {a['title']} | {reached} |")
        L.append("")
    L += ["## What the numbers say", "",
          "Each line compares two arms on one set and metric; a difference within the summed seed spread is called "
          "no measurable difference.", ""]
    L += [f"- {c}" for c in res["conclusions"]] + [""]
    findings = drift_findings(res) if res["curves"] else []
    if findings:
        L += ["Validation curves:", ""] + [f"- {c}" for c in findings] + [""]
    plan = json.loads((work / "plan.json").read_text())
    cf = f" --curves-from {res['curves_source']['work']}" if res.get("curves_source") else ""
    cmd = plan.get("command") or f"python bench/ablation.py run --budget {res['budget']} --jobs N"
    if plan.get("gan_pixel", EQ10_PIXEL) != GAN_PIXEL and "--gan-pixel" not in cmd:  # planned before the option existed
        cmd += f" --gan-pixel {plan.get('gan_pixel', EQ10_PIXEL):g}"
    evals = [plan["eval_command"] + "   # evaluation, on the machine the packed snapshots went back to"] if plan.get("eval_command") else []
    if "--no-eval" in cmd:  # trained on a lent machine: bench/device_study.sh ran it there, then `pack`
        cmd = "# on the lent machine (bench/device_study.sh: this, then `pack`; the tar files came back here)\n" + cmd
    L += ["## Reproduce", "", "```sh", cmd + "   # resumable", *evals,
          f"python bench/ablation.py report --work {os.path.relpath(work.resolve(), REPO)}{cf}"
          + ("" if main_section else f" --section {section}"), "```", ""]
    write_section(docs / "results.md", section, L, first=main_section)
    print(f"wrote {docs / 'results.md'} (section {section}) and {docs / js}")


# ----------------------------------------------------------------------------- CLI


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and evaluate every arm (resumes)")
    r.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    r.add_argument("--jobs", type=int, default=1, help="arms at once (0: in this process, one after another)")
    r.add_argument("--threads", type=int, default=0, help="CPU threads per arm (default: the cores shared among --jobs)")
    r.add_argument("--device", default="auto")
    r.add_argument("--work", default=str(DEFAULT_WORK))
    r.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    r.add_argument("--export-dir", default=str(EXPORT_DIR))
    r.add_argument("--no-export", action="store_true")
    r.add_argument("--no-eval", action="store_true", help="train only (a machine lent for training: see `pack`)")
    r.add_argument("--eval-only", action="store_true", help="no training: evaluate and export what the work folder holds")
    r.add_argument("--only", nargs="*", default=None)
    r.add_argument("--gan-pixel", type=float, default=GAN_PIXEL,
                   help=f"pixel-loss weight of every GAN arm (default {GAN_PIXEL:g}, standing in for the dropped L_Per; "
                        f"Eq. 10: {EQ10_PIXEL:g}, which collapses colour without L_Per: bench/gan_pilot.py)")
    r.add_argument("--psnr-until-s", type=float, default=0.0,
                   help="time box: the PSNR (and drift) stage stops, resumably, this many seconds after the start")
    r.add_argument("--default-head-start-s", type=float, default=0.0,
                   help="the default model trains alone for this many seconds before the study arms start")
    r.add_argument("--gan-until-s", type=float, default=0.0,
                   help="time box: the GAN stage and the default model stop this many seconds after the start")
    ex = sub.add_parser("export", help="export every arm's evaluated (else latest) generator as fp16 safetensors")
    ex.add_argument("--work", default=str(DEFAULT_WORK))
    ex.add_argument("--export-dir", default=str(EXPORT_DIR))
    pk = sub.add_parser("pack", help="a trained work folder as tar files of at most 15 MB: compared snapshots (fp16), "
                                     "plan, logs and curves")
    pk.add_argument("--work", default=str(DEFAULT_WORK))
    pk.add_argument("--out", required=True)
    rep = sub.add_parser("report", help="write docs/results.md and docs/results.json")
    rep.add_argument("--work", default=str(DEFAULT_WORK))
    rep.add_argument("--docs", default=str(REPO / "docs"))
    rep.add_argument("--curves-from", default="", help="another work folder whose drift/default validation curves to include")
    rep.add_argument("--section", default="ablation",
                     help="the section of docs/results.md to write (default: the study's; another name adds a second run's "
                          "report after it, with its own results-NAME.json)")
    for name in ("_train", "_eval"):
        t = sub.add_parser(name)
        t.add_argument("arm")
        t.add_argument("--work", required=True)
        t.add_argument("--budget", required=True)
        t.add_argument("--data-root", required=True)
        t.add_argument("--device", default="auto")
        t.add_argument("--deadline", type=float, default=0.0)
    args = p.parse_args(argv)
    if args.cmd == "run":
        return run(args)
    if args.cmd == "report":
        return report(args)
    if args.cmd == "pack":
        pack(Path(args.work), Path(args.out))
        return None
    if args.cmd == "export":
        plan = json.loads((Path(args.work) / "plan.json").read_text())
        for a in plan["arms"]:
            if a["export"]:
                export_arm(a["name"], Path(args.work), Path(args.export_dir))
        return None
    b = BUDGETS[args.budget]
    work, data_root = Path(args.work), Path(args.data_root)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.cmd == "_train":
        plan = json.loads((work / "plan.json").read_text())
        arm = {a.name: a for a in arms(plan["deep_nb"], plan.get("gan_pixel", EQ10_PIXEL))}[args.arm]
        return train_arm(arm, b, work, data_root, device, args.deadline or None)
    return eval_arm(args.arm, b, work, data_root, device)


if __name__ == "__main__":
    main()
