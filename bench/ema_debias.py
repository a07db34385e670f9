"""Remove the random start from an EMA made with a constant decay (before the warm-up fix).

    python bench/ema_debias.py --ema G_ema.safetensors --out G_ema_debiased.safetensors [--budget gpu]

An EMA with constant decay ``d`` after ``t`` updates is ``(1 - d) * sum(d^(t-s) G_s) + d^t G_0``:
it still holds ``d^t`` of the initial weights (12 % at d = 0.999, t = 2114). The first H100
run of ``bench/ablation.py`` trained the default model that way. ``G_0`` is rebuilt exactly
as the trainer built it (same recipe, same seed, same builder), and the average of the
trained weights is recovered as ``(EMA - d^t G_0) / (1 - d^t)``, like Adam's bias
correction. The trainer now warms the decay up (``trainer.ema_with_warmup``), so runs
made since need none of this.

Run it with the code of the run (commit 5fa909b for the first H100 run).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation as A  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ema", required=True, help="the EMA generator file (its metadata gives the iteration)")
    p.add_argument("--out", required=True)
    p.add_argument("--budget", default="gpu", choices=sorted(A.BUDGETS), help="the ablation budget the run used")
    p.add_argument("--arm", default="default_x4")
    args = p.parse_args(argv)

    from safetensors import safe_open
    from safetensors.torch import save_file

    from gradguide.train.build import build_generator
    from gradguide.train.trainer import _seed_everything

    arm = {a.name: a for a in A.arms(A.matched_depth())}[args.arm]
    recipe = A.build_recipe(arm, A.BUDGETS[args.budget], Path("."), "cpu", 0.0)
    _seed_everything(recipe.train.seed)  # as the trainer does right before building G
    g0 = build_generator(recipe).state_dict()
    with safe_open(args.ema, "pt") as fh:
        meta = dict(fh.metadata() or {})
        ema = {k: fh.get_tensor(k) for k in fh.keys()}
    t, d = int(meta["iteration"]), recipe.train.ema
    w = d**t
    missing = sorted(set(g0) ^ set(ema))
    if missing:
        raise SystemExit(f"{args.ema}: keys differ from the rebuilt start: {missing[:5]}")
    out = {k: (ema[k].float() - w * g0[k].float()) / (1 - w) if ema[k].is_floating_point() else ema[k] for k in ema}
    meta["ema_debiased"] = f"d={d}, t={t}, start share {w:.4f} removed"
    save_file(out, args.out, metadata=dict(sorted(meta.items())))
    print(f"{args.out}: removed {w:.4f} of the start (d={d}, t={t})")


if __name__ == "__main__":
    main()
