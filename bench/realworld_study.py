"""Equal-budget real-world study: Real-ESRGAN-style training with and without gradient
guidance (issue 12, item 6).

Two small x4 models are trained under the same budget (iterations, batch, crop, seeds,
data, degradation pipeline) on SunHays80 with on-the-fly Real-ESRGAN degradations:

* ``realesrgan``: the ``realesrgan_x4_smoke`` recipe scaled up (RRDBNet, U-Net SN
  discriminator, L1 + GAN, EMA, OTF degradations);
* ``real_spsr``: ``real_spsr_x4_smoke`` likewise (the same plus the gradient branch, the
  gradient losses and D_GM);
* optionally (``--ldl``) the ``+ldl`` variant of each.

They are compared on Set14 and BSD68 degraded once with the same pipeline and a fixed
seed (``gradguide degrade``): full-reference metrics (PSNR-Y, SSIM-Y, GMSD, gradient L1)
against the HR, NIQE on the outputs (no reference), and bicubic as the baseline. Results
go to ``WORK/results.json`` and, with ``--docs``, to a marked section of docs/results.md.

Every step is resumable: degraded test sets and finished runs are kept, an interrupted
training run continues from its ``state.pt`` (``gradguide train --resume``), so the script
can be killed and started again with the same arguments. Everything goes through the
``gradguide`` command line, so the study runs what a user runs.

    python bench/realworld_study.py --quick                       # seconds: wiring check
    python bench/realworld_study.py --iterations 20000 --device cuda --docs docs/results.md

There are no VGG19 weights on the project's machines, so the perceptual term is off in
both arms alike (``loss.perceptual=0``); pass ``--perceptual`` where the weights are in the
torch hub cache.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ARMS = {"realesrgan": "realesrgan_x4_smoke", "real_spsr": "real_spsr_x4_smoke"}
LDL_ARMS = {"realesrgan_ldl": "realesrgan_x4_ldl_smoke", "real_spsr_ldl": "real_spsr_x4_ldl_smoke"}
#: the study's model size (both arms): RRDBNet nf=32 nb=4 gc=16, discriminators nf=32
STUDY_MODEL = ["model.backbone_config.nf=32", "model.backbone_config.nb=4", "model.backbone_config.gc=16", "loss.discriminator_nf=32"]
BEGIN, END = "<!-- realworld-study:begin -->", "<!-- realworld-study:end -->"


def _cli(argv: list[str]) -> None:
    from gradguide.cli import main

    print("+ gradguide " + " ".join(argv), flush=True)
    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"gradguide {argv[0]} failed with exit code {rc}")


def _subset(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` images of ``src`` copied to ``dst`` (kept between runs)."""
    from gradguide.imageio import list_images

    if not dst.is_dir():
        tmp = dst.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in list_images(src)[:n]:
            shutil.copy2(f, tmp / f.name)
        tmp.rename(dst)
    return dst


def degraded_sets(args, work: Path) -> list[Path]:
    out = []
    for name in args.test_sets:
        src = SHARED / "test" / name if not Path(name).is_dir() else Path(name)
        if args.max_test_images:
            src = _subset(src, work / "data" / f"{Path(name).name}_first{args.max_test_images}", args.max_test_images)
        dst = work / "data" / f"{Path(name).name}_degraded"
        if not (dst / ".done").is_file():
            shutil.rmtree(dst, ignore_errors=True)
            argv = ["degrade", str(src), str(dst), "--recipe", ARMS["realesrgan"], "--seed", str(args.seed), "--device", args.device]
            if args.test_crop:
                argv += ["--crop", str(args.test_crop)]
            _cli(argv)
            (dst / ".done").write_text("ok\n")
        out.append(dst)
    return out


def train_arm(args, work: Path, arm: str, recipe: str, train_dir: Path) -> Path:
    run = work / "runs" / arm
    done = run / "done.json"
    if done.is_file():
        return run
    sets = [
        f"train.iterations={args.iterations}",
        f"train.batch_size={args.batch}",
        f"data.crop={args.crop}",
        f"train.seed={args.seed}",
        f"data.seed={args.seed}",
        f"train.checkpoint_every={max(1, min(args.iterations, args.checkpoint_every))}",
        "val.every=0",
        "log.progress=false",
    ]
    if not args.perceptual:
        sets.append("loss.perceptual=0")
    if args.time_limit_s:
        sets.append(f"train.time_limit_s={args.time_limit_s}")
    if not args.quick:
        sets += STUDY_MODEL
    sets += args.model_set
    argv = ["train", recipe, "--data-hr", str(train_dir), "--out", str(run), "--device", args.device]
    for s in sets:
        argv += ["--set", s]
    if (run / "state.pt").is_file():
        argv.append("--resume")
    t0 = time.time()
    _cli(argv)
    it = iterations_done(run)
    info = {"recipe": recipe, "iterations": it, "seconds_last_session": time.time() - t0, "overrides": sets}
    (run / "session.json").write_text(json.dumps(info, indent=1))
    if it >= args.iterations:  # a time-limited session leaves the arm to be continued by the next call
        done.write_text(json.dumps(info, indent=1))
    return run


def iterations_done(run: Path) -> int:
    from gradguide.train.state import load_state_file

    state = run / "state.pt"
    return int(load_state_file(state)["iteration"]) if state.is_file() else 0


def evaluate(args, work: Path, runs: dict[str, Path], sets: list[Path]) -> dict:
    models = []
    for arm, run in runs.items():
        ckpt = run / "G_ema_latest.safetensors"
        if not ckpt.is_file():
            ckpt = run / "G_latest.safetensors"
        named = work / "models" / f"{arm}.safetensors"
        named.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ckpt, named)  # eval names a model by its file stem
        models.append(str(named))
    out = work / "eval_full.json"
    argv = ["eval", "bicubic", *models, "--scale", "4", "--metrics", "PSNR,SSIM,NIQE,GMSD,GradL1", "--json", str(out), "--device", args.device]
    for s in sets:
        argv += ["--data", str(s)]
    _cli(argv)
    return json.loads(out.read_text())


def report(results: dict, args, runs: dict[str, Path]) -> str:
    lines = [BEGIN, "## Real-world study (issue 12): Real-ESRGAN vs gradient-guided, equal budget", ""]
    lines.append(f"Written by `python bench/realworld_study.py {' '.join(sys.argv[1:])}`. "
                 f"Each arm: up to {args.iterations} iterations"
                 + (f" or {args.time_limit_s:g} s of training per session" if args.time_limit_s else "")
                 + f" (reached: {', '.join(f'{a} {iterations_done(r)}' for a, r in runs.items())}), "
                 f"batch {args.batch}, HR crop {args.crop}, seed {args.seed}, "
                 "OTF Real-ESRGAN degradations on SunHays80; tests degraded once with the same pipeline (seed "
                 f"{args.seed}). Perceptual term {'on' if args.perceptual else 'off (no VGG19 weights)'} in every arm. "
                 "EMA weights evaluated.")
    if args.quick:
        lines.append("")
        lines.append("**--quick: a wiring check (a few iterations on tiny crops); the numbers mean nothing.**")
    metrics = ["PSNR", "SSIM", "GMSD", "GradL1", "NIQE"]
    for ds, per in results["datasets"].items():
        lines += ["", f"### {ds} (x4)", "", "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for method, r in per.items():
            vals = [r["mean"].get(m) for m in metrics]
            lines.append(f"| {method} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in vals) + " |")
    lines += ["", "PSNR/SSIM on Y (higher is better); GMSD, GradL1, NIQE lower is better. NIQE is computed on the "
              "outputs alone (no reference).", END]
    return "\n".join(lines) + "\n"


def write_docs(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="seconds: 2 iterations, tiny crops, 2 train / 1 test image per set")
    ap.add_argument("--work", default=str(REPO / "runs" / "realworld"), help="working folder (resumable)")
    ap.add_argument("--train-dir", default=str(SHARED / "train" / "SunHays80"))
    ap.add_argument("--test-sets", nargs="+", default=["Set14", "BSD68"], help="names under shared/data/test, or folders")
    ap.add_argument("--iterations", type=int, default=20000, help="training iterations per arm (the equal budget)")
    ap.add_argument("--time-limit-s", type=float, default=0.0, help="also stop each arm after this many seconds (resumable)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--checkpoint-every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ldl", action="store_true", help="also train the +ldl variant of each arm")
    ap.add_argument("--perceptual", action="store_true", help="keep the perceptual term (needs VGG19 weights)")
    ap.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE", help="extra --set for every arm")
    ap.add_argument("--max-train-images", type=int, default=0)
    ap.add_argument("--max-test-images", type=int, default=0)
    ap.add_argument("--test-crop", type=int, default=0, help="centre-crop test HR images (0: whole)")
    ap.add_argument("--docs", default=None, metavar="FILE", help="write the table into this markdown file (marked section)")
    args = ap.parse_args(argv)
    if args.quick:
        args.iterations, args.batch, args.crop, args.checkpoint_every = 2, 2, 32, 1
        args.max_train_images = args.max_train_images or 2
        args.max_test_images = args.max_test_images or 1
        args.test_crop = args.test_crop or 208  # NIQE needs two 96x96 blocks after the border crop
        if args.work == str(REPO / "runs" / "realworld"):
            args.work = str(REPO / "runs" / "realworld_quick")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_dir = Path(args.train_dir)
    if args.max_train_images:
        train_dir = _subset(train_dir, work / "data" / f"train_first{args.max_train_images}", args.max_train_images)
    sets = degraded_sets(args, work)
    arms = dict(ARMS, **(LDL_ARMS if args.ldl else {}))
    runs = {arm: train_arm(args, work, arm, recipe, train_dir) for arm, recipe in arms.items()}
    results = evaluate(args, work, runs, sets)
    section = report(results, args, runs)
    (work / "results.md").write_text(section, encoding="utf-8")
    (work / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(section)
    if args.docs:
        write_docs(Path(args.docs), section)
        print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
