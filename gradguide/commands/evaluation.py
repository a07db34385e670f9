"""``gradguide eval``: the paper's Table 1 protocol."""
from __future__ import annotations

import argparse

from . import add_device_args, make_console, resolve_device_arg


def register(sub: argparse._SubParsersAction, fmt: type) -> None:
    p = sub.add_parser(
        "eval",
        help="PSNR/SSIM (Y), LPIPS, NIQE, GMSD, gradient L1 on test sets, as the paper's Table 1",
        description="Evaluate one or more models (checkpoint files, or 'bicubic' for the baseline) "
        "on dataset folders under the standard SR protocol: LR by MATLAB bicubic on uint8 (or a paired "
        "HR/ + LR/ folder), metrics on images rounded to uint8, Y of BT.601 for PSNR/SSIM, border crop = "
        "scale. Prints one table per dataset and writes JSON/CSV with the protocol recorded.",
        formatter_class=fmt,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint file readable by gradguide.load, or 'bicubic'")
    p.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="dataset folder of HR images, or with HR/ and LR/ (LR/X4, LR_bicubic/X4) subfolders; repeatable")
    p.add_argument("--scale", type=int, default=None, help="SR factor (default: the model's, or 4 for bicubic alone)")
    p.add_argument("--metrics", default=None, help="comma-separated subset of PI,LPIPS,PSNR,SSIM,NIQE,GMSD,GradL1 (default all)")
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS trunk (default alex, as the paper)")
    p.add_argument("--lpips-weights", default=None, metavar="FILE",
                   help="torchvision trunk weights (default: $TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth)")
    p.add_argument("--require-lpips", action="store_true", help="fail instead of skipping LPIPS when its weights are missing")
    p.add_argument("--json", default=None, metavar="FILE", help="write all results and the protocol as JSON")
    p.add_argument("--csv", default=None, metavar="FILE", help="write per-image and mean values as CSV")
    add_device_args(p)
    p.add_argument("--tile", type=int, default=None, help="tile the model's forward pass (LR px; default whole image)")
    p.add_argument("--overlap", type=int, default=64, help="tile overlap in LR px (default 64)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="run each model as its x8 geometric self-ensemble (8x the compute; names get +x8)")
    p.add_argument("--no-reference", action="store_true",
                   help="the --data folders hold real LR photos without HR: upscale them and report only the "
                   "no-reference metrics (NIQE); in an HR/ + LR/ folder only the LR side is read")
    p.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images of each dataset")
    p.add_argument("--lr-cache", default=None, metavar="DIR",
                   help="keep the bicubic LR images made from HR here (per dataset and scale) and reuse them "
                   "on later runs (default $GRADGUIDE_LR_CACHE, else none)")
    p.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from ..eval.evaluate import evaluate
    from ..eval.report import print_report, write_csv, write_json

    err = make_console()
    metrics = None
    if args.metrics:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    report = evaluate(
        args.models, args.data, scale=args.scale, metrics=metrics, lpips_net=args.lpips_net,
        lpips_weights=args.lpips_weights, require_lpips=args.require_lpips, device=resolve_device_arg(args.device),
        precision=args.precision, tile=args.tile, overlap=args.overlap, max_images=args.max_images, lr_cache=args.lr_cache,
        progress=err.is_terminal, console=err, no_reference=args.no_reference, self_ensemble=args.self_ensemble,
    )
    print_report(report, make_console(stderr=False))
    if args.json:
        err.print(f"wrote {write_json(report, args.json)}", highlight=False)
    if args.csv:
        err.print(f"wrote {write_csv(report, args.csv)}", highlight=False)
    return 0
