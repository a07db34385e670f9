"""Throughput of the on-device degradation pipeline (``gradguide.data.degrade``).

    python bench/degrade_throughput.py --device cuda --batch 48 --crop 256   # Real-ESRGAN's batch
    python bench/degrade_throughput.py --quick                               # seconds, CPU

Prints HR crops per second for the full second-order pipeline (USM, two stages, final
stage; parameters drawn per batch on the CPU from per-item keys, applied on the device),
and the share of that time spent drawing the parameters. Also checks that the same keys
give the same LR twice on that device.
"""
from __future__ import annotations

import argparse
import time

import torch


def measure(device: str = "cpu", batch: int = 8, crop: int = 128, repeats: int = 3, seed: int = 0) -> dict:
    from gradguide.data.degrade import Degradation, DegradationConfig, batch_keys, draw_params

    dev = torch.device(device)
    cfg = DegradationConfig(enabled=True)
    deg = Degradation(cfg, scale=4)
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(batch, 3, crop, crop, generator=g).to(dev)
    keys = batch_keys(batch, seed=seed)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    first, _ = deg(hr, keys)  # warm-up (kernels, cuFFT/cuDNN plans)
    sync()
    again, _ = deg(hr, keys)
    sync()
    t0 = time.perf_counter()
    for r in range(repeats):
        deg(hr, batch_keys(batch, seed=seed + 1 + r))
    sync()
    total = (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    for r in range(repeats):
        draw_params(cfg, batch_keys(batch, seed=seed + 1 + r))
    draw = (time.perf_counter() - t0) / repeats
    return {
        "device": str(dev), "batch": batch, "crop": crop, "lr_shape": tuple(first.shape),
        "seconds_per_batch": total, "crops_per_second": batch / total, "draw_share": draw / total,
        "deterministic": bool(torch.equal(first, again)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="batch 2, crop 64, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.crop, args.repeats = 2, 64, 1
    r = measure(args.device, args.batch, args.crop, args.repeats)
    print(f"{r['device']}: batch {r['batch']} x {r['crop']}^2 -> LR {r['lr_shape']}: {r['seconds_per_batch'] * 1e3:.1f} ms/batch, "
          f"{r['crops_per_second']:.1f} crops/s, parameter draws {100 * r['draw_share']:.0f}% of it, "
          f"same keys same LR: {r['deterministic']}")


if __name__ == "__main__":
    main()
