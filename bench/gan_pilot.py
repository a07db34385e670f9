"""Does the study's GAN stage keep colour when it starts from a well-trained PSNR model?

The session study (docs/results.md) saw every GAN arm collapse in colour (Set5/BSD68
CIEDE2000 17-29 against bicubic's 3.6) when the arms started from its undertrained
nf16 RRDBNet. Two causes fit those numbers: the weak start, or the objective itself
(no L_Per without VGG19 weights, so the pixel term at weight 0.01 is the only content
anchor against 0.005 GAN). This pilot separates them: it trains the study's arm (e)
objective (full SPSR, ``lr`` fusion, Eq. 10 weights without L_Per, ``bench/ablation.py``'s
``SPSR`` and ``GAN_OPTIM``) from the bundled default model (RRDBNet nf64 nb8 + ``lr``
guidance, PSNR-trained, Set5 +1.96 dB over bicubic), with the study's data, crop, batch
and discriminator width, and follows Set5 colour at every validation (``val.colour``:
CIEDE2000, PSNR-RGB, mean signed error per channel).

    python bench/gan_pilot.py [--init gradguide/weights/default_x4.safetensors]
                              [--iters 300] [--val-every 50] [--pixel 0.01] [--out runs/gan_pilot]
    python bench/gan_pilot.py --report      # docs/results.md, section "gan-pilot"

Writes ``curve.jsonl`` in ``--out``, prints it as a table and records the run (settings,
wall time, machine, curve) as ``bench/results/gan_pilot/pixel_<weight>.json``. It resumes
from ``--out``. ``--report`` writes every recorded run into docs/results.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation as A  # noqa: E402  (the study's arms, data cache and validation curve)

RECORDS = A.REPO / "bench" / "results" / "gan_pilot"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", default=str(A.REPO / "gradguide" / "weights" / "default_x4.safetensors"))
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--pixel", type=float, default=A.EQ10_PIXEL, help="pixel-loss weight (Eq. 10: 0.01)")
    p.add_argument("--out", default=str(A.REPO / "runs" / "gan_pilot"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=str(A.REPO.parent / "shared" / "data"))
    p.add_argument("--cache-dir", default=str(A.DEFAULT_WORK))
    p.add_argument("--budget", default="session", choices=sorted(A.BUDGETS))
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="further recipe overrides, as `gradguide train --set` (e.g. train.ema=0.999)")
    p.add_argument("--tag", default="", help="the record's name (default pixel_<weight>)")
    p.add_argument("--note", default="", help="a sentence kept with the record (e.g. why a run was stopped)")
    p.add_argument("--record-dir", default=str(RECORDS))
    p.add_argument("--report", action="store_true", help="write the recorded runs into docs/results.md and stop")
    p.add_argument("--docs", default=str(A.REPO / "docs"))
    args = p.parse_args(argv)
    if args.report:
        report(Path(args.record_dir), Path(args.docs))
        return

    from safetensors import safe_open

    from gradguide.data.datasets import ValidationDataset
    from gradguide.train.recipe import apply_overrides
    from gradguide.train.trainer import STATE_FILE, Trainer

    with safe_open(args.init, "pt") as fh:
        cfg = json.loads((fh.metadata() or {})["gradguide.config"])
    arm = A.Arm("gan_pilot", "gan", "SPSR (lr fusion) GAN stage from a trained PSNR model", cfg["backbone"],
                {k: v for k, v in cfg["backbone_config"].items() if k not in ("in_nc", "out_nc", "scale")},
                cfg["fusion"], dict(A.SPSR, pixel=args.pixel), optim=dict(A.GAN_OPTIM))
    b = A.BUDGETS[args.budget]
    out, data_root = Path(args.out), Path(args.data_root)
    recipe = A.build_recipe(arm, b, out, args.device, 0.0, args.init)
    # the branch and fusion are trained already: no fusion-only warm-up
    recipe = apply_overrides(recipe, [f"train.iterations={args.iters}", f"val.every={args.val_every}",
                                      f"optim.milestones=[{max(1, args.iters // 2)}]", "train.warmup_iters=0", *args.sets])
    cache = A.data_cache(Path(args.cache_dir), data_root)
    val = ValidationDataset(data_root / "test" / "Set5", A.SCALE)
    t0 = time.time()
    load0 = os.getloadavg()[0]
    trainer = Trainer(recipe, out, resume=(out / STATE_FILE).is_file(), train_dataset=A.train_dataset(cache, arm, b),
                      val_dataset=val, callbacks=[A.Curve(out / "curve.jsonl")])
    start_it = trainer.iteration
    try:
        if trainer.iteration == 0:  # the start, as the first row
            out.mkdir(parents=True, exist_ok=True)
            (out / "curve.jsonl").unlink(missing_ok=True)
            A.Curve(out / "curve.jsonl").write(trainer.validate())
        res = trainer.fit()
    finally:
        trainer.close()
    timing = out / "timing.json"  # wall time over every piece of this run
    kept = json.loads(timing.read_text()) if timing.is_file() else {}
    seconds, load = kept.get("seconds"), kept.get("load_start")
    if res.iteration > start_it:  # a piece that trained (not only a record of a finished run)
        seconds, load = (seconds or 0.0) + time.time() - t0, load0 if load is None else load
        timing.write_text(json.dumps({"seconds": seconds, "load_start": load}))
    rows = list({r["iteration"]: r for r in A.read_curve(out / "curve.jsonl")}.values())  # a resumed end may repeat one
    tag = args.tag or f"pixel_{args.pixel:g}"
    rec = {"tag": tag, "sets": args.sets, "ema": recipe.train.ema, "pixel": args.pixel, "iterations": res.iteration, "planned": args.iters, "stopped": res.stopped or "",
           "init": os.path.relpath(Path(args.init).resolve(), A.REPO), "budget": args.budget, "batch": recipe.train.batch_size,
           "crop": recipe.data.crop, "loss": {k: getattr(recipe.loss, k) for k in ("pixel", "gan", "gradient_pixel", "gradient_gan", "branch")},
           "optim": {"lr_g": recipe.optim.lr_g, "lr_d": recipe.optim.lr_d, "betas": list(recipe.optim.betas)},
           "seconds": None if seconds is None else round(seconds, 1), "note": args.note, "machine": f"{platform.processor() or platform.machine()}, "
           f"{os.cpu_count()} cores, torch threads {__import__('torch').get_num_threads()}, "
           + ("load average at start not kept" if load is None else f"load average {load:.1f} at start"),
           "command": command(argv if argv is not None else sys.argv[1:]), "curve": rows}
    rd = Path(args.record_dir)
    rd.mkdir(parents=True, exist_ok=True)
    (rd / f"{tag}.json").write_text(json.dumps(rec, indent=1))
    print(f"gan_pilot: iteration {res.iteration}/{args.iters} in {time.time() - t0:.0f} s; pixel weight {args.pixel}, "
          f"init {args.init}")
    print("\n".join(table(rows)))


def command(argv: list[str]) -> str:
    """The command line that trained the run (``--note`` and its text left out: the record keeps it)."""
    import shlex

    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--note":
            skip = True
        elif not a.startswith("--note="):
            args.append(a)
    return shlex.join(["python", "bench/gan_pilot.py", *args])


def table(rows: list[dict]) -> list[str]:
    out = ["| iteration | PSNR-Y | PSNR-RGB | CIEDE2000 | mean error R / G / B (uint8 levels) |", "|---|---|---|---|---|"]
    for r in rows:
        bias = " / ".join(f"{v * 255:+.1f}" for v in r["bias_rgb"])
        out.append(f"| {r['iteration']} | {r['psnr_y']:.3f} | {r['psnr_rgb']:.3f} | {r['ciede2000']:.3f} | {bias} |")
    return out


def report(records: Path, docs: Path) -> None:
    """Section ``gan-pilot`` of docs/results.md from every recorded run."""
    recs = sorted((json.loads(p.read_text()) for p in records.glob("*.json")), key=lambda r: (r["pixel"], r["tag"]))
    if not recs:
        raise SystemExit(f"{records}: no recorded pilot runs")
    L = ["## GAN stage from a trained PSNR model (pilot)", "",
         "Why did every GAN arm of the study lose colour? This pilot trains arm (e)'s objective (full SPSR, `lr` fusion, "
         "Eq. 10 weights without L_Per, Adam 1e-4 for G and both Ds) from the bundled default model, which starts well "
         "above bicubic, with the study's data, crop, batch and discriminators, and follows Set5 colour at every "
         "validation. Only the pixel-loss weight differs between the runs. Set5 bicubic: CIEDE2000 3.178, PSNR-Y 28.417.", ""]
    for r in recs:
        stop = f", stopped: {r['stopped']}" if r["stopped"] else ""
        extra = f"; {', '.join(r['sets'])}" if r["sets"] else ""
        L += [f"### Pixel weight {r['pixel']:g} (GAN {r['loss']['gan']:g}, gradient GAN {r['loss']['gradient_gan']:g}, "
              f"branch {r['loss']['branch']:g}, EMA {r['ema']:g}{extra})", "",
              f"{r['iterations']} iterations{stop}, batch {r['batch']} x {r['crop']} px, from `{r['init']}`; "
              f"{r['machine']}; " + ("wall time not recorded" if r["seconds"] is None else f"{r['seconds']:.0f} s")
              + f". Command: `{r['command']}`." + (f" {r['note']}" if r.get("note") else ""), ""]
        L += table(r["curve"]) + [""]
    L += ["What the runs show (largest mean error of any channel over the run, and the last validation):", ""]
    for r in recs:
        worst = max(abs(v) * 255 for row in r["curve"] for v in row["bias_rgb"])
        last = r["curve"][-1]
        L.append(f"- pixel {r['pixel']:g}, EMA {r['ema']:g}: largest mean channel error {worst:.1f} levels; at iteration "
                 f"{last['iteration']} PSNR-Y {last['psnr_y']:.3f} dB, CIEDE2000 {last['ciede2000']:.3f}.")
    L += ["", "`python bench/ablation.py run` therefore gives every GAN arm the pixel weight of `--gan-pixel` (default "
          f"{A.GAN_PIXEL:g}, standing in for the dropped L_Per; Eq. 10's {A.EQ10_PIXEL:g} with `--gan-pixel {A.EQ10_PIXEL:g}`). "
          "These are colour figures of short runs on Set5, not a structure comparison: GMSD and the arms' comparison "
          "are the study's.", "",
          "Reproduce the section: `python bench/gan_pilot.py --report` (from the records in bench/results/gan_pilot/).", ""]
    path = docs / "results.md"
    A.write_section(path, "gan-pilot", L)
    print(f"wrote {path} (section gan-pilot, {len(recs)} runs)")


if __name__ == "__main__":
    main()
