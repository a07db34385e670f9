"""``gradguide convert`` and ``gradguide inspect``."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, fmt: type) -> None:
    p = sub.add_parser(
        "convert",
        help="convert any readable checkpoint to gradguide safetensors",
        description="Read a checkpoint in any known layout (official SPSR, ESRGAN, BasicSR, "
        "mmsr, gradguide, plugin layouts) and write gradguide safetensors with metadata.",
        formatter_class=fmt,
    )
    p.add_argument("input", help="checkpoint file (.safetensors, .pth, .pt)")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument("--scale", type=int, default=None, help="upscaling factor, where the file cannot tell (x2 vs x3)")
    p.add_argument("--non-strict", action="store_true", help="load despite missing/unexpected keys (they are listed)")
    p.set_defaults(func=_convert)

    q = sub.add_parser(
        "inspect",
        help="print a checkpoint's layout, architecture, parameters and GFLOPs",
        formatter_class=fmt,
    )
    q.add_argument("file", help="checkpoint file")
    q.add_argument("--size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"), help="LR input size for GFLOPs (default 32 32)")
    q.add_argument("--scale", type=int, default=None, help="upscaling factor, where the file cannot tell")
    q.add_argument("--keys", action="store_true", help="also list the ignored keys with their reasons")
    q.set_defaults(func=_inspect)


def _convert(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..checkpoints import load_checkpoint, save

    ck = load_checkpoint(args.input, strict=not args.non_strict, scale=args.scale)
    out = save(ck.model, args.output, metadata={"converted_from": ck.report.layout})
    Console().print(f"{args.input} ({ck.report.layout}, {ck.report.arch}) -> {out}: {ck.report.summary()}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..checkpoints import load_checkpoint
    from ..flops import count_flops, count_params

    ck = load_checkpoint(args.file, strict=False, scale=args.scale)
    rep, model = ck.report, ck.model
    h, w = args.size
    in_nc = int(rep.config.get("in_nc", 3))
    t = Table(title=str(args.file), show_header=False)
    t.add_row("layout", rep.layout + (f" (inside '{rep.container}')" if rep.container else ""))
    t.add_row("architecture", rep.arch)
    for k, v in sorted(rep.config.items()):
        t.add_row(f"  {k}", str(v))
    t.add_row("scale", str(getattr(model, "scale", "?")))
    t.add_row("parameters", f"{count_params(model) / 1e6:.3f} M")
    t.add_row(f"GFLOPs at {h}x{w} LR", f"{count_flops(model, (1, in_nc, h, w)) / 1e9:.2f}")
    _add_fusion_costs(t, model, (1, in_nc, h, w))
    t.add_row("keys", rep.summary())
    if rep.missing:
        t.add_row("missing", ", ".join(rep.missing))
    if rep.unexpected:
        t.add_row("unexpected", ", ".join(rep.unexpected))
    if args.keys:
        for k, why in rep.ignored.items():
            t.add_row(f"ignored {k}", why)
    Console().print(t)
    return 0


def _add_fusion_costs(table, model, shape) -> None:
    """Backbone cost and the guided cost for each fusion, where gradguide.flops offers them."""
    from .. import flops

    costs = getattr(flops, "fusion_costs", None)
    if costs is None:
        return
    for name, gflops in costs(model, shape).items():
        table.add_row(f"GFLOPs {name}", f"{gflops / 1e9:.2f}")
