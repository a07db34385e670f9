"""Adam's step over the spsr_x4 parameters (G, D_I, D_GM): single-tensor vs foreach vs
fused, side by side in one run (issue 10, item 3: "foreach or fused Adam").

Builds the paper SPSR generator and two VGG-128 discriminators (53.8 M parameters in
946 tensors), gives every parameter the same random gradient, and times ``step()`` of
each Adam variant, interleaved, best of ``--repeats``. Also prints how far the
parameters of each variant are from the single-tensor ones after the repeats (fused
kernels round differently; foreach does the same operations).

    python bench/optimizer_step.py [--repeats 4] [--device cpu] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="a tiny generator (CI)")
    args = ap.parse_args(argv)

    import torch

    import gradguide
    from gradguide.discriminators import create_discriminator

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = gradguide.create_spsr(nf=8, nb=20, gc=4) if args.quick else gradguide.create_spsr(nf=64, nb=23)
    nets = [g, create_discriminator("vgg128"), create_discriminator("vgg128")]
    params0 = [[p.detach().to(args.device).clone() for p in n.parameters()] for n in nets]
    grads = [[torch.randn_like(p) * 1e-3 for p in ps] for ps in params0]
    n_params = sum(p.numel() for ps in params0 for p in ps) / 1e6
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads; {n_params:.1f} M parameters in "
          f"{sum(len(ps) for ps in params0)} tensors; load average {os.getloadavg()[0]:.2f}")

    def make(kind):
        ps = [[p.clone().requires_grad_() for p in q] for q in params0]
        kw = {"single-tensor": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[kind]
        opts = [torch.optim.Adam(q, lr=1e-4, betas=(0.9, 0.999), **kw) for q in ps]
        for q, gq in zip(ps, grads):
            for p, gr in zip(q, gq):
                p.grad = gr.clone()
        return ps, opts

    runs = {k: make(k) for k in ("single-tensor", "foreach", "fused")}
    best = {k: float("inf") for k in runs}
    for _ in range(args.repeats):
        for k, (_, opts) in runs.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            for o in opts:
                o.step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best[k] = min(best[k], time.perf_counter() - t)
    ref = runs["single-tensor"][0]
    for k, (ps, _) in runs.items():
        d = max((a - b).abs().max().item() for qa, qb in zip(ps, ref) for a, b in zip(qa, qb))
        print(f"{k:<14} best {best[k]:.3f} s   x{best['single-tensor'] / best[k]:.2f} vs single-tensor   "
              f"max |param - single-tensor| after {args.repeats} steps {d:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
