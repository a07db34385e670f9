"""What ``edge_pad`` costs in upscaling time: the bundled model with ``edge_pad`` 0 and 4
(the shipped value), timed alternately in one process on the same random LR images.

    python bench/edge_pad_cost.py [--sizes 128 256 512] [--repeats 3] [--pad 4]
    python bench/edge_pad_cost.py --quick      # CI: a tiny wrapped RRDBNet, not timed

Each size runs ``gradguide.infer.tiling.tiled_forward`` with ``tile="auto"`` (on the CPU,
tiles of at most ``CPU_TILE`` LR px), so the pad is paid once per tile. Prints, per size,
the best of ``--repeats`` seconds for each setting and their ratio; the ratio expected
from the work alone is ``(1 + 2 pad / tile)^2`` per tile.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pad", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="tiny model and images (CI smoke test, not a measurement)")
    args = ap.parse_args(argv)

    import torch

    import gradguide
    from gradguide.infer.tiling import tiled_forward

    torch.manual_seed(0)
    if args.quick:
        from gradguide_backbones.rrdb import RRDBNet

        base = gradguide.wrap(RRDBNet(nf=8, nb=1, gc=4, scale=4), fusion="lr").eval()
        padded = gradguide.wrap(RRDBNet(nf=8, nb=1, gc=4, scale=4), fusion="lr", edge_pad=args.pad).eval()
        padded.load_state_dict(base.state_dict())
        sizes, repeats = [16, 24], 1
    else:
        base, padded = gradguide.load("default").eval(), gradguide.load("default").eval()
        base.edge_pad, padded.edge_pad = 0, args.pad
        sizes, repeats = args.sizes, args.repeats
    print(f"{platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{'tiny wrapped RRDBNet (--quick, not a measurement)' if args.quick else 'bundled default model'}\n")
    print(f"| LR size | edge_pad 0 (s) | edge_pad {args.pad} (s) | ratio |")
    print("|---|---|---|---|")
    for n in sizes:
        lr = torch.rand(1, 3, n, n)
        best = {0: float("inf"), args.pad: float("inf")}
        for _ in range(repeats):
            for pad, net in ((0, base), (args.pad, padded)):  # alternate: load drifts hit both alike
                t = time.perf_counter()
                tiled_forward(net, lr, tile="auto")
                best[pad] = min(best[pad], time.perf_counter() - t)
        print(f"| {n} | {best[0]:.2f} | {best[args.pad]:.2f} | {best[args.pad] / best[0]:.3f} |")


if __name__ == "__main__":
    main()
