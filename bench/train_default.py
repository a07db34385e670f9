"""Train (or continue) the bundled default model, ``recipes/default_x4.toml``, on SunHays80.

    python bench/train_default.py --out runs/default_x4 [--init FILE] [--set KEY=VALUE ...] [--time-limit-s S]

The data are the study's (``bench/ablation.py``): SunHays80 decoded once, HR cropped to a
multiple of 4, LR by MATLAB bicubic of each whole image. ``--init`` starts from a
generator file (the whole model, not only the backbone); ``--set`` overrides recipe keys
as ``gradguide train --set`` does (for a CPU continuation: smaller crops and batches).
Resumes from ``--out`` when a training state is there. Every validation round appends
Set5 PSNR-Y, PSNR-RGB, CIEDE2000 and the mean signed RGB error to ``curve.jsonl``.

The shipped file is made by ``python bench/model_card.py`` (fp16 export, evaluation on
Set5/Set14/BSD68 against bicubic, docs/model-default.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation as A  # noqa: E402  (the study's data cache and validation curve)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(A.REPO / "runs" / "default_x4"))
    p.add_argument("--init", default="", help="generator file to start from (whole model)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--time-limit-s", type=float, default=0.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=str(A.REPO.parent / "shared" / "data"))
    p.add_argument("--cache-dir", default=str(A.DEFAULT_WORK))
    args = p.parse_args(argv)

    from gradguide.data.datasets import ValidationDataset
    from gradguide.train.recipe import apply_overrides, load_recipe
    from gradguide.train.trainer import STATE_FILE, Trainer

    out = Path(args.out)
    data_root = Path(args.data_root)
    sets = [f"train.device={args.device}", f"train.time_limit_s={args.time_limit_s}", "data.workers=0",
            "log.tensorboard=false", *args.sets]
    if args.init:
        sets.append(f"model.pretrained={args.init}")
    recipe = apply_overrides(load_recipe(A.REPO / "recipes" / "default_x4.toml"), sets)
    arm = A.Arm("default_x4", "default", recipe.description, "rrdbnet", {}, "lr", {}, data={"crop": recipe.data.crop, "border_crops": recipe.data.border_crops,
                                                                                            "lr_from": recipe.data.lr_from})
    cache = A.data_cache(Path(args.cache_dir), data_root)
    val = ValidationDataset(data_root / "test" / "Set5", A.SCALE)
    resume = (out / STATE_FILE).is_file()
    trainer = Trainer(recipe, out, resume=resume, train_dataset=A.train_dataset(cache, arm, A.BUDGETS["cpu"]), val_dataset=val,
                      callbacks=[A.Curve(out / "curve.jsonl")])
    try:
        res = trainer.fit()
    finally:
        trainer.close()
    print(f"default_x4: iteration {res.iteration}/{recipe.train.iterations}" + (f" ({res.stopped})" if res.stopped else ""))


if __name__ == "__main__":
    main()
