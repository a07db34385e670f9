"""``gradguide eval`` throughput: the per-pair evaluation it replaced vs today's, one run.

Builds an Urban100-sized folder (``--images`` photos of ``--size`` W x H, default 10 of
1024x768: the bundled BSD68/Set14 photos resized with MATLAB bicubic, so no download)
and evaluates ``bicubic`` x4 on it three ways, interleaved and repeated (best of
``--repeats``), in one process:

* ``old``: :func:`gradguide.eval._reference.evaluate_images`, the loop as it was
  (2-D 11x11 SSIM window, every map recomputed per metric, LR remade every run);
* ``new, cold``: :func:`gradguide.evaluate` with an empty LR cache;
* ``new, warm``: the same with the LR cache filled (a second ``gradguide eval``).

for two metric sets: PSNR+SSIM (the usual table) and every full-reference metric plus
NIQE (LPIPS needs weights and is not measured). It prints seconds per image, the
speed-up against ``old``, and the largest difference in any value (must be <= 1e-6).
The load average is printed too: on a shared machine compare the ratios, not seconds.

    python bench/eval_throughput.py [--images 10] [--size 1024x768] [--repeats 3]
    python bench/eval_throughput.py --quick       # CI: 2 tiny images, exercised not timed
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GRADGUIDE_SHARED", ROOT.parent / "shared"))


def make_folder(dst: Path, n: int, w: int, h: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    from gradguide.data.imresize import imresize

    srcs = sorted(glob.glob(str(SHARED / "data/test/BSD68/*.png"))) + sorted(glob.glob(str(SHARED / "data/test/Set14/*.png")))
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    rng = np.random.default_rng(0)
    for i in range(n):
        if srcs:
            a = np.asarray(Image.open(srcs[i % len(srcs)]).convert("RGB"))
        else:  # no shared data: smooth random texture
            a = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
        img = imresize(a, size=(h, w))
        p = dst / f"img_{i:03d}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--size", default="1024x768", help="W x H of each image (Urban100's typical size)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="metrics device for the new path (cuda on a GPU machine)")
    ap.add_argument("--metric-sets", default="PSNR,SSIM;PSNR,SSIM,GMSD,GradL1,NIQE",
                    help="';'-separated metric lists (default: the usual table; all but LPIPS)")
    ap.add_argument("--quick", action="store_true", help="2 images of 128x96, 1 repeat (CI)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.size, args.repeats = 2, "128x96", 1

    import numpy as np
    import torch

    from gradguide.eval import _reference as R
    from gradguide.eval.evaluate import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    s = args.scale
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Folder"
        files = make_folder(folder, args.images, w, h)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(files)} images {w}x{h}, bicubic x{s}; "
              f"load average at start {os.getloadavg()[0]:.2f}")
        # warm-up (imports, lazy tables, allocator) on one image, outside the timings
        R.evaluate_images(files[:1], s, ["PSNR", "SSIM", "GMSD", "GradL1", "NIQE"])
        evaluate(["bicubic"], [folder], scale=s, metrics=["PSNR", "SSIM", "GMSD", "GradL1", "NIQE"], max_images=1, device=args.device)
        summary = {"images": len(files), "size": [w, h], "device": args.device, "threads": torch.get_num_threads(),
                   "load_start": os.getloadavg()[0], "sets": {}}
        print(f"{'metrics':<34}{'path':<12}{'s/image':>9}{'speed-up':>10}{'max |diff|':>12}")
        for mset in args.metric_sets.split(";"):
            metrics = [m.strip() for m in mset.split(",") if m.strip()]
            best = {"old": float("inf"), "new, cold": float("inf"), "new, warm": float("inf")}
            diff = 0.0
            for rep in range(args.repeats):
                cache = Path(tmp) / f"cache_{mset}_{rep}"
                t = time.perf_counter()
                ref = R.evaluate_images(files, s, metrics)
                best["old"] = min(best["old"], time.perf_counter() - t)
                for label in ("new, cold", "new, warm"):
                    t = time.perf_counter()
                    got = evaluate(["bicubic"], [folder], scale=s, metrics=metrics, lr_cache=cache, device=args.device)
                    best[label] = min(best[label], time.perf_counter() - t)
                images = got.results["Folder"]["Bicubic"].images
                for g, r in zip(images, ref):
                    for m in metrics:
                        a, b = g.metrics[m], r[m]
                        if a is None or b is None or (np.isnan(a) and np.isnan(b)):
                            continue
                        diff = max(diff, abs(a - b))
            base = best["old"]
            for label, sec in best.items():
                print(f"{mset:<34}{label:<12}{sec / len(files):>9.3f}{base / sec:>9.2f}x{diff:>12.1e}")
            summary["sets"][mset] = {k: v / len(files) for k, v in best.items()} | {"max_abs_diff": diff}
            if diff > 1e-6:
                print(f"ERROR: values differ from the reference by {diff:.2e} (> 1e-6)")
                return 1
        print(f"load average at end {os.getloadavg()[0]:.2f}")
        summary["load_end"] = os.getloadavg()[0]
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
