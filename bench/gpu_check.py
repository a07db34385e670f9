"""Run every bench on CUDA, and a short spsr_x4 training whose loss must fall.

Driven by ``bench/gpu_check.sh`` (which makes the source tree importable on a machine
where gradguide is not installed). Each item runs in this process, one after the other;
its full output goes to ``<out>/<item>.log`` (and ``.json`` figures where the bench
writes them), and a compact table is printed at the end and saved as
``<out>/summary.txt`` / ``summary.json``.

Items (``--dry``: the same code paths on CPU with tiny sizes, for CI):

* ``train_step[fp32|bf16|bf16+channels_last|bf16+compile]``: ``bench/train_step.py``,
  recipe spsr_x4 (paper SPSR, D_I, D_GM, VGG19) at batch 16, HR 128;
* ``inference``: ``bench/inference.py`` (RRDBNet, paper SPSR, lr fusion; 64x64 LR);
* ``upscale``: ``bench/upscale_throughput.py`` (context table, MP/s old vs new at 512 x4);
* ``eval``: ``bench/eval_throughput.py`` (old vs new evaluation, metrics on the GPU);
* ``loader``: ``bench/loader.py`` (samples/s of the spsr_x4 pipeline on this host's CPUs);
* ``train``: ``gradguide train spsr_x4`` on scikit-image's bundled photos for
  ``--train-iters`` iterations (80); passes when the mean reconstruction loss
  (pixel + gradient_pixel + branch) of the last fifth is below that of the first fifth.

A time budget (``--budget`` seconds, default 200) is shared: an item that would start
with less than its expected time left is skipped and said so; ``torch.compile`` runs last.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RECON = ("pixel", "gradient_pixel", "branch")


class Item:
    def __init__(self, name: str, fn, expect_s: float) -> None:
        self.name, self.fn, self.expect_s = name, fn, expect_s
        self.status, self.seconds, self.figure = "not run", 0.0, ""


def _run_captured(log: Path, fn) -> None:
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            fn()
    finally:
        log.write_text(buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry", action="store_true", help="CPU, tiny sizes: prove the script works (CI)")
    ap.add_argument("--out", default=None, help="log folder (default $GPU_CHECK_OUT, $OUT, else ./gpu_check_out)")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --dry)")
    ap.add_argument("--budget", type=float, default=200.0, help="seconds for everything (default 200)")
    ap.add_argument("--train-iters", type=int, default=None, help="iterations of the training check (default 80; dry 6)")
    ap.add_argument("--only", default=None, help="comma-separated item name prefixes to run")
    args = ap.parse_args(argv)

    import torch

    dry = args.dry
    if dry:  # tiny ops on a shared CI machine: one thread avoids OpenMP barrier stalls
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
    dev = args.device or ("cpu" if dry else "cuda")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; use --dry for the CPU check", file=sys.stderr)
        return 2
    out = Path(args.out or os.environ.get("GPU_CHECK_OUT") or os.environ.get("OUT") or "gpu_check_out")
    out.mkdir(parents=True, exist_ok=True)
    where = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    header = f"gpu_check{' --dry' if dry else ''}: torch {torch.__version__}, {where}, python {sys.version.split()[0]}"
    import gradguide
    import gradguide_backbones

    print(header, flush=True)
    print(f"gradguide from {Path(gradguide.__file__).parent}, backbones from {Path(gradguide_backbones.__file__).parent}", flush=True)
    t_start = time.perf_counter()
    results: dict = {"header": header, "device": where, "dry": dry, "items": {}}

    tiny = ["--set", "model.backbone_config={nf=8, nb=20, gc=4}"]
    ts_common = (["--batch", "2", "--lr-size", "8", "--steps", "1", "--peak-n", "256", *tiny] if dry
                 else ["--batch", "16", "--lr-size", "32", "--steps", "3"])

    def train_step_item(label: str, extra: list):
        def fn():
            import train_step

            js = out / f"train_step_{label}.json"
            train_step.main([*ts_common, "--device", dev, "--json", str(js), *extra])
            r = json.loads(js.read_text())
            return f"{r['seconds_per_step_mean']:.3f} s/step, {r['achieved_gflops'] / 1e3:.1f} TFLOP/s", r
        return fn

    def inference_item():
        import inference

        js = out / "inference.json"
        argv = ["--device", dev, "--json", str(js), "--no-fusion-table"]
        argv += ["--size", "16", "--nf", "8", "--nb", "20", "--repeats", "1", "--peak-n", "256"] if dry else ["--size", "64", "--repeats", "5"]
        inference.main(argv)
        r = json.loads(js.read_text())
        m = r["models"]
        figs = ", ".join(f"{k.split(' ')[0]} {v['seconds'] * 1e3:.1f} ms" for k, v in m.items())
        return figs, r

    def upscale_item():
        import upscale_throughput

        js = out / "upscale.json"
        argv = ["--device", dev, "--json", str(js)]
        argv += ["--quick"] if dry else ["--size", "512", "--context-size", "96", "--overlaps", "0,2,4,6,8,12,16", "--fit-size", "160", "--model", "default"]
        upscale_throughput.main(argv)
        r = json.loads(js.read_text())
        figs = "; ".join(f"{k.split(' ')[0]} x{v['throughput']['speedup']:.2f} vs old" for k, v in r["models"].items() if "throughput" in v)
        return figs, r

    def eval_item():
        import eval_throughput

        js = out / "eval.json"
        argv = ["--device", dev, "--json", str(js)]
        argv += ["--quick"] if dry else ["--images", "6", "--repeats", "1"]
        rc = eval_throughput.main(argv)
        r = json.loads(js.read_text())
        if rc:
            raise RuntimeError("eval values differ from the reference")
        figs = "; ".join(f"{k}: x{v['old'] / v['new, warm']:.2f}" for k, v in r["sets"].items())
        return figs, r

    def loader_item():
        import loader

        js = out / "loader.json"
        loader.main(["--json", str(js)] + (["--quick"] if dry else ["--workers", "0,4,8", "--batches", "6"]))
        r = json.loads(js.read_text())
        best = max(x["samples_per_s"] for x in r["rows"])
        return f"best {best:.0f} samples/s of {r['need_samples_per_s']:.0f} needed ({'keeps up' if r['keeps_up'] else 'short'})", r

    def train_item():
        iters = args.train_iters or (6 if dry else 80)
        run_dir = out / "train_run"
        cmd = [sys.executable, "-m", "gradguide.cli", "train", "spsr_x4", "--out", str(run_dir), "--device", dev,
               "--set", "data.source=skimage", "--set", f"train.iterations={iters}", "--set", "train.warmup_iters=0",
               "--set", "loss.on_missing_vgg=drop", "--set", "val.every=0", "--set", "log.tensorboard=false",
               "--set", "log.progress=false", "--set", f"train.checkpoint_every={iters}", "--set", "log.every=1"]
        if dry:
            cmd += ["--set", "train.batch_size=2", "--set", "data.crop=32", "--set", "data.workers=0", *tiny,
                    "--set", "optim.lr_g=1e-3"]
        else:
            cmd += ["--set", "train.batch_size=16", "--set", "data.crop=128", "--set", "data.workers=4"]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=os.environ.copy())
        print(" ".join(cmd))
        print(p.stdout)
        print(p.stderr)
        if p.returncode != 0:
            raise RuntimeError(f"gradguide train exited {p.returncode}: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
        rec = []
        for line in p.stdout.splitlines() + p.stderr.splitlines():
            if re.match(r"\s*it \d+/\d+", line):
                terms = dict(re.findall(r"(\w+)=([-+0-9.eE]+|nan|inf)", line))
                if all(k in terms for k in RECON):
                    rec.append(sum(float(terms[k]) for k in RECON))
        if len(rec) < 4:
            raise RuntimeError(f"found {len(rec)} loss lines in the training log (need >= 4)")
        k = max(1, len(rec) // 5)
        first, last = sum(rec[:k]) / k, sum(rec[-k:]) / k
        falls = last < first
        fig = f"recon loss {first:.4g} -> {last:.4g} over {len(rec)} its ({'falls' if falls else 'DOES NOT FALL'})"
        if not falls and not dry:
            raise RuntimeError(fig)
        return fig, {"first": first, "last": last, "iterations": len(rec), "falls": falls}

    # most wanted first: a later item is skipped when the budget runs short
    items = [
        Item("train_step fp32", train_step_item("fp32", []), 25),
        Item("train_step bf16", train_step_item("bf16", ["--amp", "bf16"]), 20),
        Item("train", train_item, 45),
        Item("inference", inference_item, 10),
        Item("upscale", upscale_item, 20),
        Item("eval", eval_item, 20),
        Item("train_step bf16+channels_last", train_step_item("bf16_cl", ["--amp", "bf16", "--channels-last"]), 20),
        Item("loader", loader_item, 15),
        Item("train_step bf16+compile", train_step_item("bf16_compile", ["--amp", "bf16", "--compile"]), 60),
    ]
    if dry:
        items[-1].status = "skipped (dry: torch.compile needs minutes on CPU)"
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    for it in items:
        if it.status.startswith("skipped"):
            continue
        if only and not any(it.name.startswith(o) for o in only):
            it.status = "skipped (--only)"
            continue
        left = args.budget - (time.perf_counter() - t_start)
        if left < it.expect_s and not dry:
            it.status = f"skipped (budget: {left:.0f} s left, needs ~{it.expect_s:.0f} s)"
            continue
        log = out / (re.sub(r"[^\w]+", "_", it.name) + ".log")
        t = time.perf_counter()
        print(f"[{time.perf_counter() - t_start:6.1f} s] {it.name} ...", flush=True)
        try:
            holder = {}

            def call(it=it, holder=holder):
                holder["r"] = it.fn()

            _run_captured(log, call)
            it.figure, data = holder["r"]
            it.status = "ok"
            results["items"][it.name] = {"status": "ok", "figure": it.figure, "data": data}
        except Exception as exc:  # noqa: BLE001 - report and go on with the next item
            it.status = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            with open(log, "a") as fh:
                fh.write("\n" + traceback.format_exc())
            results["items"][it.name] = {"status": it.status}
        finally:
            it.seconds = time.perf_counter() - t
            if dev.startswith("cuda"):
                torch.cuda.empty_cache()
    total = time.perf_counter() - t_start
    lines = [header, f"{'item':<32}{'status':<10}{'s':>7}  figure", "-" * 100]
    for it in items:
        st = "ok" if it.status == "ok" else it.status
        lines.append(f"{it.name:<32}{st if st == 'ok' else '':<10}{it.seconds:>7.1f}  {it.figure if st == 'ok' else st}")
    lines.append(f"total {total:.1f} s; logs in {out}")
    text = "\n".join(lines)
    print("\n" + text)
    (out / "summary.txt").write_text(text + "\n")
    results["total_s"] = total
    (out / "summary.json").write_text(json.dumps(results, indent=2, default=str))
    bad = [it for it in items if it.status.startswith("FAILED")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
