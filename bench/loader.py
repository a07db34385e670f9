"""Data loading for spsr_x4: samples/s at 0, 2 and 4 workers, and whether it keeps up
with a GPU step.

The pipeline is the trainer's: :func:`gradguide.train.build.build_train_dataset` for the
``spsr_x4`` recipe (HR folder, random 128x128 HR crop aligned to the x4 grid, its LR
patch by MATLAB bicubic, flips/rotations) in a ``DataLoader`` with the trainer's
settings, over ``--data`` (default: the shared SunHays80 training photos, else
scikit-image's bundled photos). Each configuration is timed over ``--batches`` batches
after one warm-up batch (which also starts the workers). ``--cache`` also measures the
dataset's in-memory cache of decoded images (``HRFolderDataset(cache=True)``, per worker).

The GPU side is an estimate, not a measurement: the FLOPs of one spsr_x4 training step
per sample (forward and backward of G, D_I, D_GM and VGG19; by default 440.1 GFLOP, the
``FlopCounterMode`` count of ``bench/train_step.py`` at batch 2 and 32x32 LR, 880.2 GFLOP
per step; ``--train-step-json`` reads a fresh one) at ``--mfu`` (40 %) of an H100's dense
bf16 peak (989 TFLOP/s).

    python bench/loader.py [--data DIR] [--workers 0,2,4] [--batches 8] [--batch 16] [--cache]
    python bench/loader.py --quick    # CI: tiny crops, 2 batches, 0 and 2 workers
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
H100_BF16_DENSE_TFLOPS = 989.0
SPSR_X4_STEP_GFLOP_PER_SAMPLE = 880.2 / 2  # bench/train_step.py, batch 2, 32x32 LR (docs/performance.md)


def measure(dataset, workers: int, batch: int, batches: int) -> float:
    import torch

    # sampled with replacement: as many batches as asked for, whatever the dataset's size
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=batch * (batches + 1))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                                         persistent_workers=workers > 0, drop_last=True)
    it = iter(loader)
    next(it)  # warm-up: worker start, first decode
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        lr, hr = next(it)[:2]
        n += lr.shape[0]
    sec = time.perf_counter() - t
    del it, loader
    return n / sec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="HR folder (default: ../shared/data/train/SunHays80, else skimage photos)")
    ap.add_argument("--recipe", default="spsr_x4")
    ap.add_argument("--workers", default="0,2,4")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--cache", action="store_true", help="also measure the in-memory cache of decoded images")
    ap.add_argument("--mfu", type=float, default=0.40, help="fraction of the H100 bf16 peak a step reaches (default 0.40)")
    ap.add_argument("--train-step-json", default=None, help="bench/train_step.py --json output to take the FLOPs from")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from gradguide.data import datasets as ds
    from gradguide.train.recipe import resolve_recipe

    recipe = resolve_recipe(args.recipe)
    scale, crop = recipe.model.scale, recipe.data.crop
    workers = [int(w) for w in args.workers.split(",")]
    if args.quick:
        crop, workers, args.batches, args.batch = 32, [0, 2], 2, 4
    data = args.data
    if data is None:
        shared = Path(os.environ.get("GRADGUIDE_SHARED", ROOT.parent / "shared")) / "data/train/SunHays80"
        data = str(shared) if shared.is_dir() else None
    if data is None:
        source = "scikit-image photos"

        def make(cache):
            return ds.skimage_dataset("train", scale, crop=crop, augment=recipe.data.augment)
    else:
        source = data

        def make(cache):
            return ds.HRFolderDataset(data, scale, crop=crop, augment=recipe.data.augment, cache=cache)

    flops = SPSR_X4_STEP_GFLOP_PER_SAMPLE * 1e9
    flops_from = "bench/train_step.py, batch 2, 32x32 LR: 880.2 GFLOP per step (docs/performance.md)"
    if args.train_step_json:
        r = json.loads(Path(args.train_step_json).read_text())
        flops = r["flops_per_step"] / r["batch"]
        flops_from = f"{args.train_step_json}: {r['flops_per_step'] / 1e9:.1f} GFLOP per step at batch {r['batch']}"
    gpu_step_per_sample = flops / (args.mfu * H100_BF16_DENSE_TFLOPS * 1e12)
    need = 1.0 / gpu_step_per_sample

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; recipe {recipe.name}: "
          f"HR crop {crop}, x{scale}, batch {args.batch}; data {source}")
    rows = []
    for cache in ([False, True] if args.cache else [False]):
        dataset = make(cache)
        for w in workers:
            sps = measure(dataset, w, args.batch, args.batches)
            rows.append({"workers": w, "cache": cache, "samples_per_s": sps})
            print(f"  workers {w}{' (cached decodes)' if cache else '':<18} {sps:8.1f} samples/s", flush=True)
    best = max(r["samples_per_s"] for r in rows)
    keeps_up = best >= need
    print(f"GPU step estimate: {flops / 1e9:.1f} GFLOP per sample ({flops_from}) at {args.mfu:.0%} of "
          f"{H100_BF16_DENSE_TFLOPS:.0f} TFLOP/s (H100 dense bf16) = {gpu_step_per_sample * 1e3:.2f} ms per sample "
          f"-> needs {need:.0f} samples/s")
    print(f"best loader: {best:.1f} samples/s = {best / need:.2%} of that: "
          f"{'keeps up' if keeps_up else f'does NOT keep up (x{need / best:.0f} short)'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "need_samples_per_s": need, "keeps_up": keeps_up,
                                               "gflop_per_sample": flops / 1e9, "mfu": args.mfu, "cpus": os.cpu_count(),
                                               "load": os.getloadavg()[0], "data": source}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
