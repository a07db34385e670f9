"""Peak memory of ``gradguide upscale`` for a large input with the paper-size SPSR on CPU.

Not a timed test. A full 2048x2048 x4 run with nf=64, nb=23 takes hours on 2 cores
(about 46 s per 192x192 tile, 256 tiles), so by default this runs the real pipeline
(:func:`gradguide.infer.upscale.upscale_image`: full image in CPU memory, streamed
bands, uint8 output buffer) and stops after ``--tiles`` tiles, then extrapolates:

    peak_full = peak_measured                    (process RSS high-water mark, incl. torch)
              + untouched part of the output buffers (allocated lazily by the OS;
                a full run writes every page)
              + 3 x one band accumulator       (band / norm, quantisation temporaries and
                the concatenation when the next tile row starts; not reached before the
                first band is emitted)

Tile activations repeat identically for every tile, so the first tile already shows
their peak. Use ``--tiles 0`` (all) on a machine with time to spare for a measured figure.

    python bench/upscale_memory.py --size 2048 --scale 4 --max-memory 3G --tiles 2
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class _Stop(Exception):
    pass


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048, help="LR input side (default 2048)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--nf", type=int, default=64)
    ap.add_argument("--nb", type=int, default=23)
    ap.add_argument("--gc", type=int, default=32)
    ap.add_argument("--tile", type=int, default=None, help="tile side (default: planned from --max-memory)")
    ap.add_argument("--max-memory", default="3G", help="budget the tile is planned for (default 3G)")
    ap.add_argument("--overlap", type=int, default=None)
    ap.add_argument("--tiles", type=int, default=1, help="stop after this many tiles (0 = full run)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import torch

    from gradguide.infer.tiling import DEFAULT_OVERLAP, balanced_tile, plan_tile, tile_starts
    from gradguide.infer.upscale import upscale_image
    from gradguide.spsr import create_spsr

    if args.threads:
        torch.set_num_threads(args.threads)
    overlap = DEFAULT_OVERLAP if args.overlap is None else args.overlap
    s, n = args.scale, args.size
    base = rss_peak_mb()
    model = create_spsr(nf=args.nf, nb=args.nb, gc=args.gc, scale=s).eval()
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(3, n, n, generator=g)
    after_setup = rss_peak_mb()
    plan = plan_tile(model, (1, 3, n, n), scale=s, overlap=overlap, max_memory=args.max_memory)
    tile = args.tile or plan.tile or n
    tile = balanced_tile(n, tile, overlap)
    print(f"plan for --max-memory {args.max_memory}: tile {plan.tile} (balanced {tile}), estimated peak "
          f"{plan.estimated_peak / 2**20:.0f} MiB of a {plan.budget / 2**20:.0f} MiB budget "
          f"(fixed {plan.fixed / 2**20:.0f} MiB, {plan.per_pixel / 1e3:.1f} kB traced activations per LR px)")
    per_row = len(tile_starts(n, tile, overlap))
    total_tiles = per_row**2
    done = {"n": 0, "t0": time.perf_counter(), "first": None}

    def on_tile(k: int, total: int) -> None:
        done["n"] = k
        if done["first"] is None:
            done["first"] = time.perf_counter() - done["t0"]
        print(f"  tile {k}/{total}  {time.perf_counter() - done['t0']:.1f} s  peak RSS {rss_peak_mb():.0f} MB", flush=True)
        if args.tiles and k >= args.tiles:
            raise _Stop

    print(f"SPSR nf={args.nf} nb={args.nb} gc={args.gc} ({n_params / 1e6:.2f} M params), input {n}x{n} x{s}, "
          f"tile {tile}, overlap {overlap}, {total_tiles} tiles, torch threads {torch.get_num_threads()}")
    full = True
    try:
        upscale_image(model, lr, scale=s, tile=tile, overlap=overlap, on_tile=on_tile)  # tile already balanced
    except _Stop:
        full = False
    peak = rss_peak_mb()
    out_mb = (n * s) ** 2 * 3 / 2**20  # uint8 output buffer
    band_mb = 3 * tile * s * n * s * 4 / 2**20  # one float32 band accumulator (B=1, C=3)
    print(f"baseline RSS {base:.0f} MB; after model + input {after_setup:.0f} MB; measured peak {peak:.0f} MB "
          f"after {done['n']} of {total_tiles} tiles ({'full run' if full else 'partial'})")
    if done["first"] is not None:
        print(f"first tile {done['first']:.1f} s -> full run estimate {done['first'] * total_tiles / 3600:.1f} h")
    if not full and done["n"] > per_row:
        # a whole tile row ran and its band was written: the band temporaries are in the
        # measured peak; only the rest of the output buffer is still untouched
        est = peak + out_mb
        print(f"extrapolated full-run peak: {peak:.0f} + output {out_mb:.0f} = {est:.0f} MB "
              f"({est / 1024:.2f} GiB; upper bound: output counted as untouched)")
    elif not full:
        est = peak + out_mb + 3 * band_mb
        print(f"extrapolated full-run peak: {peak:.0f} + output {out_mb:.0f} + 3 x band {band_mb:.0f} = {est:.0f} MB "
              f"({est / 1024:.2f} GiB; upper bound: output counted as untouched; run --tiles {per_row + 1} "
              f"to measure the band temporaries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
