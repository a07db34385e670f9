"""``upscale`` throughput and tiling error: today's defaults vs the memory-sized tiles, one run.

Two parts, each for the paper SPSR (``create_spsr``, nf=64, nb=23), RRDBNet with the
``lr`` fusion (nf=64, nb=23), and any checkpoint given with ``--model`` (e.g. the bundled
default model). Weights are random (seed 0) unless a checkpoint is given.

1. **How far context reaches** (``--context-size``, default 64 LR px): the image is run
   untiled, then as a 2x2 grid of balanced tiles for each overlap in ``--overlaps``; the
   table gives the largest difference from the untiled output in uint8 levels and the
   share of output values that differ after rounding. A default overlap is acceptable
   when the largest difference is <= 1 level.
2. **Throughput** (``--size``, default 512 LR px, x4): megapixels of output per second
   with the defaults of old (tile 128, overlap 32, fixed grid, NCHW) against today's
   (``tile="auto"``: from the memory budget and at most ``CPU_TILE`` on the CPU,
   ``DEFAULT_OVERLAP``, balanced grid, ``channels_last`` tiles on the CPU), timed one
   after the other in the same process; between them today's tiling with NCHW tiles,
   so each change's factor shows (``--no-breakdown`` skips that row).
3. **Tile sweep** (``--tile-sweep 64,96,128,192,256``): one untiled forward per side,
   NCHW and channels_last, in microseconds per LR pixel: where the time per pixel starts
   to rise is what ``CPU_TILE`` rests on.

    python bench/upscale_throughput.py [--size 512] [--context-size 64] [--device cpu]
                                       [--max-memory 8G] [--model ckpt.safetensors ...]
    python bench/upscale_throughput.py --quick     # CI: tiny models and images, not timed

A 512x512 paper-SPSR run is about 27 TFLOP untiled: minutes on a GPU-less 2-core
machine. Use ``--size`` to shorten it there, and compare ratios within one run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _models(args):
    import torch

    import gradguide
    from gradguide_backbones.rrdb import RRDBNet

    nb, nf = (2, 16) if args.quick else (args.nb, args.nf)
    torch.manual_seed(0)
    out = [("SPSR paper", gradguide.create_spsr(nf=nf, nb=max(nb, 20) if not args.quick else 20, gc=32 if not args.quick else 8))]
    torch.manual_seed(0)
    out.append(("RRDBNet + lr fusion", gradguide.wrap(RRDBNet(nf=nf, nb=nb), fusion="lr")))
    for p in args.model:
        from gradguide.checkpoints import load

        out.append((os.path.basename(p), load(p)))
    return [(n, m.eval()) for n, m in out]


def _image(n: int, seed: int = 0):
    """A natural LR image: a bundled photo if present, else smooth noise."""
    import glob

    import numpy as np
    import torch
    from PIL import Image

    root = os.environ.get("GRADGUIDE_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    files = sorted(glob.glob(os.path.join(root, "data/test/Set14/*.png")))
    if files:
        a = np.asarray(Image.open(files[seed % len(files)]).convert("RGB"))
        from gradguide.data.imresize import imresize

        a = imresize(a, size=(n, n))
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div(255.0)
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(1, 3, n // 4 + 1, n // 4 + 1, generator=g), size=(n, n), mode="bicubic")[0].clamp(0, 1)


def _u8(x):
    import torch

    return torch.floor(x.clamp(0, 1) * 255 + 0.5)


def context_table(name, model, n, overlaps, device, scale):
    import torch

    from gradguide.infer.tiling import tiled_forward

    # full fp32 convolutions: TF32 would add its own (shape-dependent) rounding to the comparison
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    x = _image(n)
    t = time.perf_counter()
    ref, _ = tiled_forward(model, x, scale=scale, tile=None, device=device)
    t_untiled = time.perf_counter() - t
    ref8 = _u8(ref)
    rows = []
    for o in overlaps:
        tile = (n + o + 1) // 2  # a 2x2 grid: every output pixel near a seam is tested
        t = time.perf_counter()
        out, _ = tiled_forward(model, x, scale=scale, tile=tile, overlap=o, device=device)
        sec = time.perf_counter() - t
        d = (out - ref).abs().max().item() * 255
        d8 = (_u8(out) - ref8).abs()
        rows.append((o, tile, d, int(d8.max().item()), (d8 > 0).float().mean().item(), sec / t_untiled))
    torch.backends.cudnn.allow_tf32 = True  # back to torch's default for the timings
    print(f"\n{name}: context, {n}x{n} LR x{scale}, 2x2 tiles vs untiled ({t_untiled:.1f} s untiled); "
          f"each side of a seam keeps overlap/2 LR px of context")
    print(f"{'overlap':>8}{'tile':>6}{'max |diff| (levels, float)':>28}{'max uint8 diff':>16}{'uint8 values differing':>24}{'time/untiled':>14}")
    for o, tile, d, m8, frac, rel in rows:
        print(f"{o:>8}{tile:>6}{d:>28.3f}{m8:>16}{frac:>23.3%}{rel:>13.2f}x")
    return {"untiled_s": t_untiled, "rows": [dict(zip(("overlap", "tile", "max_diff_levels", "max_uint8_diff", "frac_differing", "time_vs_untiled"), r)) for r in rows]}


def tile_sweep(name, model, sides, device, scale):
    """Seconds per LR pixel of one untiled forward at each side, NCHW and channels_last."""
    import torch

    from gradguide.infer.tiling import run_tiles

    def sink(y0, y1, sr, grad):
        pass

    run_tiles(model, _image(32)[None], sink, scale=scale, tile=None, device=device, channels_last=False)  # warm-up
    run_tiles(model, _image(32)[None], sink, scale=scale, tile=None, device=device, channels_last=True)
    rows = []
    for n in sides:
        x = _image(n, seed=3)[None]
        row = [n]
        for nhwc in (False, True):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            run_tiles(model, x, sink, scale=scale, tile=None, device=device, channels_last=nhwc)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            row.append((time.perf_counter() - t) / n**2 * 1e6)
        rows.append(row)
    print(f"\n{name}: tile sweep, one untiled forward per LR side, microseconds per LR pixel")
    print(f"{'side':>6}{'NCHW':>10}{'NHWC':>10}{'NCHW/NHWC':>11}")
    for n, a, b in rows:
        print(f"{n:>6}{a:>10.1f}{b:>10.1f}{a / b:>10.2f}x")
    return [dict(zip(("side", "nchw_us_per_px", "nhwc_us_per_px"), r)) for r in rows]


def throughput(name, model, n, device, scale, max_memory, repeats, breakdown=True):
    import torch

    from gradguide.infer.tiling import DEFAULT_OVERLAP, LEGACY_TILE, plan_tile, resolve_dtype, run_tiles

    x = _image(n, seed=1)[None]
    mp = (n * scale) ** 2 / 1e6

    def sink(y0, y1, sr, grad):
        pass

    def timed(**kw):
        best = float("inf")
        used = None
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            used = run_tiles(model, x, sink, scale=scale, device=device, **kw)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        return best, used

    model.to(device)
    plan = plan_tile(model, x.shape, scale=scale, overlap=DEFAULT_OVERLAP, device=device, dtype=resolve_dtype("fp32"), max_memory=max_memory)
    # warm-up (oneDNN primitives / cuDNN autotune) on a small input
    run_tiles(model, x[..., :32, :32], sink, scale=scale, tile=None, device=device, channels_last=False)
    run_tiles(model, x[..., :32, :32], sink, scale=scale, tile=None, device=device)
    old_s, _ = timed(tile=LEGACY_TILE, overlap=32, balance=False, channels_last=False)
    rows = [("old defaults: tile 128, overlap 32, fixed grid, NCHW", old_s)]
    tiles = f"tile auto -> {'untiled' if plan.tile is None else plan.tile}, overlap {DEFAULT_OVERLAP}, balanced"
    mid_s = None
    if breakdown:
        mid_s, _ = timed(tile="auto", overlap=DEFAULT_OVERLAP, max_memory=max_memory, channels_last=False)
        rows.append((f"{tiles}, NCHW", mid_s))
    new_s, used = timed(tile="auto", overlap=DEFAULT_OVERLAP, max_memory=max_memory)
    nhwc = torch.device(device).type == "cpu"
    rows.append((f"new defaults: {tiles}{', NHWC' if nhwc else ''}", new_s))
    print(f"\n{name}: throughput, {n}x{n} LR x{scale} -> {mp:.2f} MP output, device {device}; budget {plan.budget / 2**30:.2f} GiB, "
          f"estimated peak {plan.estimated_peak / 2**30:.2f} GiB, {plan.per_pixel / 1e3:.0f} kB activations per LR px")
    print(f"{'':<72}{'s':>8}{'MP/s':>9}{'vs old':>8}")
    for label, sec in rows:
        print(f"{label:<72}{sec:>8.2f}{mp / sec:>9.3f}{old_s / sec:>7.2f}x")
    return {"size": n, "mp": mp, "old_s": old_s, "tiling_nchw_s": mid_s, "new_s": new_s, "speedup": old_s / new_s,
            "tile": plan.tile, "budget": plan.budget, "estimated_peak": plan.estimated_peak, "per_pixel": plan.per_pixel}


def fits_untiled(name, model, n, device, scale, max_memory):
    """An input that fits the budget untiled: the default costs at most 1.25x the untiled
    run (it runs it untiled up to ``CPU_TILE``, in tiles above that on the CPU)."""
    from gradguide.infer.tiling import run_tiles

    x = _image(n, seed=2)[None]

    def sink(y0, y1, sr, grad):
        pass

    t = time.perf_counter()
    run_tiles(model, x, sink, scale=scale, device=device, tile=None)
    untiled = time.perf_counter() - t
    t = time.perf_counter()
    used = run_tiles(model, x, sink, scale=scale, device=device, tile="auto", max_memory=max_memory)
    auto = time.perf_counter() - t
    print(f"{name}: {n}x{n} LR fits: default ran {'untiled' if used >= n else f'tiled ({used})'}, "
          f"{auto:.2f} s vs untiled {untiled:.2f} s = {auto / untiled:.2f}x")
    return {"size": n, "untiled": used >= n, "auto_s": auto, "untiled_s": untiled, "ratio": auto / untiled}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="LR side for the throughput part (default 512)")
    ap.add_argument("--context-size", type=int, default=64, help="LR side for the context part (default 64; 0 skips it)")
    ap.add_argument("--overlaps", default="0,2,4,6,8,16", help="overlaps to test in the context part (each side keeps half)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--nf", type=int, default=64)
    ap.add_argument("--nb", type=int, default=23)
    ap.add_argument("--model", action="append", default=[], help="also a checkpoint (gradguide.load); repeatable")
    ap.add_argument("--only", default=None, help="run only models whose name contains this")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-memory", default=None, help="budget for tile='auto' (default: from free memory)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--fit-size", type=int, default=96, help="LR side of the fits-untiled check (0 skips it)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--no-breakdown", action="store_true", help="throughput: skip the row of today's tiling with NCHW tiles")
    ap.add_argument("--tile-sweep", default="", help="LR sides for the tile sweep, e.g. 64,96,128,192,256 (default: none)")
    ap.add_argument("--quick", action="store_true", help="tiny models and sizes (CI: exercised, not timed)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.context_size, args.overlaps, args.fit_size = 40, 24, "0,4", 24
        args.tile_sweep = "16,24"

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    overlaps = [int(v) for v in args.overlaps.split(",") if v.strip()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    dev_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {dev_name}, fp32; load average at start {load:.2f}")
    summary = {"device": dev_name, "load_start": load, "models": {}}
    for name, model in _models(args):
        if args.only and args.only.lower() not in name.lower():
            continue
        res = summary["models"][name] = {}
        if args.context_size:
            res["context"] = context_table(name, model.to(args.device), args.context_size, overlaps, args.device, args.scale)
        if args.tile_sweep:
            res["tile_sweep"] = tile_sweep(name, model, [int(v) for v in args.tile_sweep.split(",") if v.strip()], args.device, args.scale)
        if not args.skip_throughput:
            res["throughput"] = throughput(name, model, args.size, args.device, args.scale, args.max_memory, args.repeats,
                                           breakdown=not args.no_breakdown)
        if args.fit_size:
            res["fits"] = fits_untiled(name, model, args.fit_size, args.device, args.scale, args.max_memory)
    summary["load_end"] = os.getloadavg()[0]
    print(f"\nload average at end {summary['load_end']:.2f}")
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
