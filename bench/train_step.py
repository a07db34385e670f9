"""Training-step benchmark: seconds per step and achieved GFLOP/s of the real trainer.

Runs :meth:`gradguide.train.trainer.Trainer.train_step` (G step with Eq. 10 incl. VGG19
perceptual, RaGAN on D_I and D_GM; then the D step) for a recipe, by default
``spsr_x4`` with the paper's generator (nf=64, nb=23) at batch 2 and 32x32 LR patches
(128x128 HR). FLOPs of one whole step (forward + backward of G, D_I, D_GM and VGG19) are
counted with ``torch.utils.flop_counter.FlopCounterMode``; the dense fp32 matmul peak is
measured in the same run, so the fraction is comparable across machines.

When no VGG19 weights are installed the perceptual network keeps a random
initialisation: the same FLOPs, so the timing is still that of the real step.

    python bench/train_step.py [--recipe spsr_x4] [--batch 2] [--lr-size 32] [--steps 3]
                               [--threads N] [--device cpu] [--amp bf16] [--channels-last]
                               [--set model.backbone_config.nb=2 ...] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings

import torch


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


class _Synthetic(torch.utils.data.Dataset):
    def __init__(self, n: int, lr: int, scale: int) -> None:
        self.n, self.lr, self.scale = n, lr, scale

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        hr = torch.rand(3, self.lr * self.scale, self.lr * self.scale, generator=g)
        return torch.nn.functional.avg_pool2d(hr[None], self.scale)[0], hr


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="spsr_x4")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr-size", type=int, default=32, help="LR patch size (HR = x scale)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--profile", type=int, default=0, metavar="ROWS",
                    help="after the timed steps, one more step split into phases (G forward, G loss, backward, optimizers, "
                         "D loss, EMA) and torch.profiler's top ROWS operators by self time")
    ap.add_argument("--peak-n", type=int, default=2048, help="matrix side of the matmul peak measurement (default 2048)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from torch.utils.flop_counter import FlopCounterMode

    from gradguide.losses import VGGFeatureExtractor
    from gradguide.train.recipe import apply_overrides, resolve_recipe
    from gradguide.train.trainer import Trainer

    recipe = resolve_recipe(args.recipe)
    scale = recipe.model.scale
    recipe = apply_overrides(
        recipe,
        [
            f"train.batch_size={args.batch}",
            f"data.crop={args.lr_size * scale}",
            f"train.device={args.device}",
            f"train.amp={args.amp}",
            f"train.channels_last={'true' if args.channels_last else 'false'}",
            f"train.compile={'true' if args.compile else 'false'}",
            "train.warmup_iters=0",  # time the full step (all of G trains)
            "loss.on_missing_vgg=drop",
            "val.every=0",
            "log.tensorboard=false",
            "log.progress=false",
            *args.overrides,
        ],
    )
    notes = []
    peak_before = matmul_peak_gflops(n=args.peak_n, device=args.device, repeats=10)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr = Trainer(recipe, tmp, train_dataset=_Synthetic(max(args.batch, 4), args.lr_size, scale))
        if recipe.loss.perceptual > 0 and tr.loss.perceptual == 0:
            tr.loss.feature_extractor = VGGFeatureExtractor(recipe.loss.perceptual_layer, pretrained=False).to(tr.device)
            tr.loss.perceptual = recipe.loss.perceptual
            notes.append("VGG19 weights not installed: random VGG19 (same FLOPs) for the perceptual term")
        tr._set_phase(False)
        ds = _Synthetic(args.batch, args.lr_size, scale)
        lr = torch.stack([ds[i][0] for i in range(args.batch)])
        hr = torch.stack([ds[i][1] for i in range(args.batch)])

        def sync():
            if tr.device.type == "cuda":
                torch.cuda.synchronize()

        t = time.perf_counter()
        res = tr.train_step(lr, hr)  # warm-up (kernel selection, oneDNN primitive creation)
        first_terms = res[1] if isinstance(res, tuple) and len(res) > 1 and isinstance(res[1], dict) else {}
        first_terms = {k: float(v) for k, v in first_terms.items()}
        sync()
        first = time.perf_counter() - t
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            tr.train_step(lr, hr)
            sync()
            times.append(time.perf_counter() - t)
        with FlopCounterMode(display=False) as fc:
            tr.train_step(lr, hr)
        flops = fc.get_total_flops()
        profile = _profile(tr, lr, hr, sync, args.profile) if args.profile else None
        params = {
            "G": sum(p.numel() for p in tr.G.parameters()),
            "D_I": sum(p.numel() for p in tr.D_I.parameters()) if tr.D_I is not None else 0,
            "D_GM": sum(p.numel() for p in tr.D_GM.parameters()) if tr.D_GM is not None else 0,
        }
    # the peak is measured before and after the steps and the higher one kept: on a
    # shared machine a single measurement can be disturbed by other processes
    peak_after = matmul_peak_gflops(n=args.peak_n, device=args.device, repeats=10)
    peak = max(peak_before, peak_after)
    mean = sum(times) / len(times)
    best = min(times)
    achieved = flops / mean / 1e9
    achieved_best = flops / best / 1e9
    m = recipe.model
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, amp {args.amp}")
    print(f"recipe {recipe.name}: arch {m.arch} nf={m.nf} nb={m.nb}, batch {args.batch}, LR {args.lr_size}x{args.lr_size}, HR {args.lr_size * scale}x{args.lr_size * scale}")
    print("params: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in params.items()))
    print(f"dense fp32 matmul peak (2048^3, same run, best of before/after): {peak:.1f} GFLOP/s ({peak_before:.1f} / {peak_after:.1f})")
    print(f"FLOPs per training step (fwd+bwd of G, D_I, D_GM, VGG19): {flops / 1e9:.1f} GFLOP")
    print(f"first step {first:.2f} s; {len(times)} timed steps: mean {mean:.2f} s, best {best:.2f} s")
    print(f"achieved {achieved:.1f} GFLOP/s (mean step) = {achieved / peak:.1%} of the matmul peak; best step {achieved_best:.1f} GFLOP/s = {achieved_best / peak:.1%}")
    for n in notes:
        print(f"note: {n}")
    if profile:
        print(f"\nwhere one step's time goes ({profile['step_s']:.2f} s, phases timed by wrapping the trainer's collaborators):")
        for k, v in profile["phases"].items():
            print(f"  {k:<34}{v:>8.3f} s {v / profile['step_s']:>7.1%}")
        print(f"\ntorch.profiler, top {args.profile} operators by self CPU time (same step, profiled again):")
        print(profile["table"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "recipe": recipe.name, "batch": args.batch, "lr_size": args.lr_size, "device": args.device,
                    "amp": args.amp, "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "seconds_per_step_mean": mean, "seconds_per_step_best": best, "first_step_s": first,
                    "flops_per_step": flops, "achieved_gflops": achieved, "matmul_peak_gflops": peak, "matmul_peak_before_after": [peak_before, peak_after],
                    "fraction_of_peak": achieved / peak, "params": params, "notes": notes,
                    "first_step_terms": first_terms, "seconds_per_step_all": times,
                    "profile_phases": profile["phases"] if profile else None,
                },
                f,
                indent=2,
            )  # fmt: skip


def _profile(tr, lr, hr, sync, rows: int) -> dict:
    """One step with each collaborator's call timed (G forward, the G loss with its D
    passes, each optimizer step, the D loss, the EMA update); the backward passes are the
    rest of the step. Then the same step under torch.profiler for an operator table."""
    import torch

    spent: dict = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            sync()
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                sync()
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    tr.G_train.forward = timed("G forward", tr.G_train.forward)
    tr.loss.forward = timed("G loss (pixel, VGG, D on fake/real)", tr.loss.forward)
    tr.loss.discriminator_loss = timed("D loss (D_I, D_GM forward)", tr.loss.discriminator_loss)
    for name, o in tr.opt.named().items():
        o.step = timed(f"Adam step {name}", o.step)
    if tr.ema is not None:
        tr.ema.update_parameters = timed("EMA update", tr.ema.update_parameters)
    sync()
    t = time.perf_counter()
    tr.train_step(lr, hr)
    sync()
    step = time.perf_counter() - t
    phases = dict(spent)
    phases["backward passes (G, D) and the rest"] = step - sum(spent.values())
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if tr.device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        tr.train_step(lr, hr)
        sync()
    key = "self_cuda_time_total" if tr.device.type == "cuda" else "self_cpu_time_total"
    return {"step_s": step, "phases": phases, "table": prof.key_averages().table(sort_by=key, row_limit=rows)}


if __name__ == "__main__":
    main()
