"""Inference benchmark: paper-exact SPSR vs plain RRDBNet, measured side by side.

Prints params, GFLOPs and images/s at a 64x64 LR input, and the achieved GFLOP/s as
a fraction of this machine's dense fp32 matmul peak, measured in the same run.
Timings on shared machines are noisy; the ratios between rows are what to compare.

    python bench/inference.py [--size 64] [--repeats 3] [--threads N] [--nf 64 --nb 23]
"""
from __future__ import annotations

import argparse
import time

import torch


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_gflops(n: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        model(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            _sync(x.device)
            t = time.perf_counter()
            model(x)
            _sync(x.device)
            best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="LR input size (default 64)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--nf", type=int, default=64)
    ap.add_argument("--nb", type=int, default=23)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--no-fusion-table", action="store_true", help="skip the FLOPs ratio table")
    ap.add_argument("--peak-n", type=int, default=2048, help="matrix side of the matmul peak measurement (default 2048)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import gradguide
    from gradguide.flops import count_flops, count_params
    from gradguide_backbones.rrdb import RRDBNet

    torch.manual_seed(0)
    dev = args.device
    peak_before = matmul_peak_gflops(n=args.peak_n, device=dev)
    x = torch.rand(1, 3, args.size, args.size)
    rows = []
    for name, model in (
        ("RRDBNet (ESRGAN)", RRDBNet(nf=args.nf, nb=args.nb)),
        ("SPSR (paper-exact)", gradguide.create_spsr(nf=args.nf, nb=args.nb)),
        ("RRDBNet + lr fusion", gradguide.wrap(RRDBNet(nf=args.nf, nb=args.nb), fusion="lr")),
    ):
        model.eval()
        flops = count_flops(model, x)
        sec = time_forward(model.to(dev), x.to(dev), args.repeats)
        rows.append((name, count_params(model), flops, sec))

    # the machine is shared: take the best of a peak measured before and after the models
    peak = max(peak_before, matmul_peak_gflops(n=args.peak_n, device=dev))
    where = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, fp32, LR input {args.size}x{args.size}")
    print(f"dense fp32 matmul peak (2048^3, same run): {peak:.1f} GFLOP/s")
    print(f"{'model':<22}{'params (M)':>11}{'GFLOPs':>9}{'s/img':>8}{'img/s':>8}{'GFLOP/s':>9}{'of peak':>9}")
    for name, params, flops, sec in rows:
        achieved = flops / sec / 1e9
        print(f"{name:<22}{params / 1e6:>11.2f}{flops / 1e9:>9.1f}{sec:>8.2f}{1 / sec:>8.3f}{achieved:>9.1f}{achieved / peak:>9.1%}")
    (_, p0, f0, s0), *guided = rows
    for name, p1, f1, s1 in guided:
        print(f"{name} / RRDBNet: params {p1 / p0:.2f}x, FLOPs {f1 / f0:.2f}x, time {s1 / s0:.2f}x")
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump({"device": where, "size": args.size, "matmul_peak_gflops": peak,
                       "models": {n: {"params": p, "flops": f, "seconds": sec} for n, p, f, sec in rows}}, fh, indent=2)
    if not args.no_fusion_table:
        print_fusion_ratios()


# ---------------------------------------------------------------------------------
# issue #3: cost of gradient guidance on every registered backbone, per fusion
def fusion_ratios(size: int = 32) -> list[tuple[str, str, float, float, float]]:
    """``(backbone, fusion, backbone GFLOPs, guided GFLOPs, ratio)`` for each registered
    backbone at its default (paper) configuration. Models are built on the meta device:
    FlopCounterMode needs only shapes, so even SwinIR's paper fusion is counted quickly."""
    from gradguide.flops import fusion_cost_table
    from gradguide.plugins import registries

    rows = []
    for name, entry in registries().backbones.items():
        if name.startswith("spandrel-"):
            continue  # the same architectures as rrdbnet / swinir
        with torch.device("meta"):
            model = entry.factory()
            costs = fusion_cost_table(model, (1, 3, size, size))
        base = costs[0].flops
        for c in costs[1:]:
            rows.append((name, c.name, base / 1e9, c.flops / 1e9, c.ratio))
    return rows


def print_fusion_ratios(size: int = 32) -> None:
    print(f"\nFLOPs ratio guided/backbone per fusion (LR input {size}x{size}, default configurations)")
    print(f"{'backbone':<12}{'fusion':<8}{'backbone GFLOPs':>16}{'guided GFLOPs':>15}{'ratio':>8}")
    for name, fusion, b, g, r in fusion_ratios(size):
        print(f"{name:<12}{fusion:<8}{b:>16.1f}{g:>15.1f}{r:>7.2f}x")


if __name__ == "__main__":
    main()
