"""Training-step variants side by side in one run: each alone against the eager fp32 step.

Runs ``bench/train_step.py`` (the real ``Trainer.train_step`` of a recipe; default
spsr_x4 with the paper generator, batch 2, 32x32 LR) once per variant, interleaved over
``--rounds`` rounds in this process, and prints each variant's best mean seconds per
step, its factor against the baseline (the first variant) and the largest relative
difference of the first step's loss terms from the baseline's (same seed, same batch:
an optimisation that keeps the losses keeps them to rounding).

    python bench/train_step_compare.py [--variants "fp32;channels_last"] [--rounds 2] [--steps 2]
    python bench/train_step_compare.py --variants "fp32;channels_last;reuse_real;fused_adam;channels_last+reuse_real+fused_adam"
    python bench/train_step_compare.py --quick     # CI: a tiny generator, 1 round
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = {
    "fp32": [],
    "channels_last": ["--channels-last"],
    "bf16": ["--amp", "bf16"],
    "bf16+channels_last": ["--amp", "bf16", "--channels-last"],
    "compile": ["--compile"],
    # D_I(HR) and D_GM(M(HR)) once per step (the G step keeps their graph for the D step)
    "reuse_real": ["--set", "train.reuse_real_logits=true"],
    # torch's fused Adam kernel for G, D_I and D_GM
    "fused_adam": ["--set", "optim.fused=true"],
    # everything kept on CPU together
    "channels_last+reuse_real+fused_adam": ["--channels-last", "--set", "train.reuse_real_logits=true", "--set", "optim.fused=true"],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="fp32;channels_last", help=f"';'-separated, first is the baseline: {list(VARIANTS)}")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    args, rest = ap.parse_known_args(argv)
    import train_step

    names = [v.strip() for v in args.variants.split(";") if v.strip()]
    extra = ["--set", "model.backbone_config={nf=8, nb=20, gc=4}", "--peak-n", "256", "--lr-size", "8"] if args.quick else ["--lr-size", str(args.lr_size)]
    rounds = 1 if args.quick else args.rounds
    best: dict = {}
    terms: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name in names:
                js = Path(tmp) / f"{name}_{r}.json"
                train_step.main(["--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device,
                                 "--json", str(js), *VARIANTS[name], *extra, *rest])
                res = json.loads(js.read_text())
                best[name] = min(best.get(name, float("inf")), res["seconds_per_step_mean"])
                terms.setdefault(name, res.get("first_step_terms", {}))
    base = names[0]
    print(f"\nload average {os.getloadavg()[0]:.2f}; best of {rounds} round(s), mean of {args.steps} timed steps each")
    print(f"{'variant':<22}{'s/step':>9}{'vs ' + base:>12}{'rel. diff of G total, D total':>32}{'max abs diff, any term':>24}")
    for name in names:
        t0, t1 = terms.get(base, {}), terms.get(name, {})
        rel = [abs(t1[k] - t0[k]) / max(abs(t0[k]), 1e-12) for k in ("total", "d_total") if k in t0 and k in t1]
        absd = max((abs(t1[k] - t0[k]) for k in t0 if k in t1), default=float("nan"))
        rel_s = ", ".join(f"{v:.1e}" for v in rel) or "n/a"
        print(f"{name:<22}{best[name]:>9.2f}{best[base] / best[name]:>11.2f}x{rel_s:>32}{absd:>24.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
