"""``gradguide upscale`` and ``gradguide export``."""
from __future__ import annotations

import argparse

from ..bundled import BUNDLED, DEFAULT_MODEL
from . import add_device_args, make_console, resolve_device_arg


def register(sub: argparse._SubParsersAction, fmt: type) -> None:
    from ..infer.tiling import CPU_TILE, DEFAULT_OVERLAP, DEFAULT_TILE

    p = sub.add_parser(
        "upscale",
        help="super-resolve image files, folders or globs (tiled, streamed)",
        description="Upscale images with a model. The image stays in CPU memory and one tile at a time "
        "goes to the device; overlapping tiles are blended (no seams). The tile size halves on out-of-memory. "
        "Greyscale, RGBA (alpha upscaled separately, bicubic) and 16-bit PNG are kept as such. Unreadable files "
        "are named and skipped; the batch goes on (exit code 1 if any was skipped). Existing output files are "
        "kept unless --overwrite is given; an input file is never overwritten. A full disk or a read-only "
        "output folder stops the batch with one line saying what was written.",
        formatter_class=fmt,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders or glob patterns; the older form 'upscale MODEL INPUT...' (a first "
                        "argument ending in .safetensors/.pth/.pt/.ckpt) still works")
    p.add_argument("-m", "--model", default=None, metavar="MODEL",
                   help=f"checkpoint file readable by gradguide.load, or a bundled model's name "
                        f"(default: the bundled '{DEFAULT_MODEL}', docs/model-default.md)")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--scale", type=int, default=None, help="override the model's scale")
    p.add_argument("--tile", type=_tile_arg, default=DEFAULT_TILE,
                   help=f"tile side in LR px, 0 = whole image, 'auto' = the largest that fits --max-memory, "
                        f"on the CPU at most {CPU_TILE} (default {DEFAULT_TILE})")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help=f"tile overlap in LR px (default {DEFAULT_OVERLAP})")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory budget for --tile auto, e.g. 3G or 512M (default: half the available RAM on CPU, "
                   "80%% of the free GPU memory on CUDA)")
    add_device_args(p)
    p.add_argument("--save-grad", action="store_true", help="also write the gradient branch's map as <name>_grad.png")
    p.add_argument("--compare", action="store_true", help="also write <name>_compare.png (bicubic | model)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the model over the 8 rotations/flips of each tile (x8 geometric self-ensemble; 8x the compute)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse larger inputs (default 8192*8192)")
    p.add_argument("--suffix", default="", help="added to output file stems")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (default: keep them and skip)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_upscale)

    q = sub.add_parser(
        "export",
        help="export a model to ONNX (dynamic height/width) and check it with onnxruntime",
        formatter_class=fmt,
    )
    q.add_argument("model", metavar="MODEL", help="checkpoint file readable by gradguide.load")
    q.add_argument("output", metavar="OUT.onnx", help="ONNX file to write")
    q.add_argument("--scale", type=int, default=None, help="upscaling factor, where the file cannot tell")
    q.add_argument("--with-grad", action="store_true", help="also export the gradient map (output 'grad')")
    q.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    q.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter")
    q.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    q.set_defaults(func=_export)


def _tile_arg(v: str):
    """``--tile``: an int (0 = whole image) or ``auto``."""
    if str(v).strip().lower() == "auto":
        return "auto"
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of LR pixels, 0 or 'auto', got {v!r}") from None


CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


def split_model_arg(model, inputs: list) -> tuple[str, list]:
    """``(model, inputs)`` for ``upscale``: ``--model``, else a leading checkpoint argument
    (``upscale MODEL INPUT...``), else the bundled default model."""
    if model is not None:
        return model, inputs
    first = str(inputs[0])
    if len(inputs) > 1 and (first.lower().endswith(CHECKPOINT_SUFFIXES) or first in {m.name for m in BUNDLED}):
        return first, inputs[1:]
    return DEFAULT_MODEL, inputs


def _upscale(args: argparse.Namespace) -> int:
    from ..infer.upscale import upscale

    args.model, args.inputs = split_model_arg(args.model, args.inputs)
    err = make_console()
    results = upscale(
        args.model, args.inputs, args.out, scale=args.scale, tile=args.tile or None, overlap=args.overlap, max_memory=args.max_memory,
        device=resolve_device_arg(args.device), precision=args.precision, save_grad=args.save_grad,
        compare=args.compare, max_pixels=args.max_pixels, suffix=args.suffix, overwrite=args.overwrite,
        progress=not args.no_progress, console=err, self_ensemble=args.self_ensemble,
    )
    err.print(_summary(results, args.out), highlight=False, markup=False)
    return 0 if all(r.ok for r in results) else 1


def _summary(results, out) -> str:
    written = sum(1 for r in results if r.written)
    exists = sum(1 for r in results if r.exists is not None)
    bad = sum(1 for r in results if not r.ok)
    msg = f"{written} written to {out}"
    if exists:
        msg += f", {exists} kept (output exists; --overwrite replaces)"
    return msg + f", {bad} skipped"


def _export(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..infer.onnx_export import export_onnx
    from ..infer.upscale import resolve_model

    model = resolve_model(args.model, args.scale)
    rep = export_onnx(model, args.output, with_grad=args.with_grad, opset=args.opset, dynamo=args.dynamo, check=not args.no_check)
    out = Console()
    out.print(f"wrote {rep.path} (outputs: {', '.join(rep.outputs)}; opset {rep.opset}; dynamic batch/height/width)", highlight=False)
    for name, e in rep.max_abs_error.items():
        out.print(f"onnxruntime parity on a random {rep.check_shape} input: {name} max abs error {e:.3e}", highlight=False)
    return 0
