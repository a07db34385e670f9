"""``gradguide backbones`` and ``gradguide plugins``: what the plugin registry holds."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, fmt: type) -> None:
    p = sub.add_parser(
        "backbones",
        help="list the registered backbones (wrap(model) needs no spec for these)",
        description="Backbones registered by installed plugins (gradguide's own included), with the "
        "plugin that registered each, its scales and the fusions its guidance spec allows.",
        formatter_class=fmt,
    )
    p.add_argument("--spec", metavar="NAME", default=None,
                   help="also build NAME with its defaults and print its guidance spec (taps, replaced layer, LR feature)")
    p.set_defaults(func=_backbones)

    q = sub.add_parser(
        "plugins",
        help="list installed gradguide plugins, what each registers, and broken plugins",
        description="Plugins found in the 'gradguide' entry-point group. A plugin that fails to import or "
        "returns something invalid is listed with the reason; the others keep working.",
        formatter_class=fmt,
    )
    q.set_defaults(func=_plugins)


def _backbones(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..plugins import registries

    regs = registries()
    t = Table(title="gradguide backbones")
    for col in ("name", "plugin", "scales", "description"):
        t.add_column(col)
    for name, entry in regs.backbones.items():
        t.add_row(name, regs.backbones.owner(name), ", ".join(f"x{s}" for s in entry.scales), entry.description)
    con = Console()
    con.print(t)
    if args.spec:
        from ..errors import SpecError

        if args.spec not in regs.backbones:
            raise SpecError(f"--spec: unknown backbone {args.spec!r}; registered: {', '.join(regs.backbones.names())}")
        entry = regs.backbones.get(args.spec)
        spec = entry.spec(entry.factory())
        s = Table(title=f"{args.spec}: guidance spec (default configuration)", show_header=False)
        s.add_row("taps", ", ".join(f"{tp.name} ({tp.channels})" for tp in spec.taps))
        s.add_row("replace (paper fusion)", f"{spec.replace} ({spec.hr_channels} ch)" if spec.replace else "-")
        s.add_row("lr_feature (lr fusion)", f"{spec.lr_feature} ({spec.lr_channels} ch)" if spec.lr_feature else "-")
        s.add_row("fusions", ", ".join(spec.fusions()))
        s.add_row("scale", str(spec.scale))
        con.print(s)
    _print_problems(con, regs.problems)
    return 0


def _plugins(args: argparse.Namespace) -> int:
    import importlib.metadata

    from rich.console import Console
    from rich.table import Table

    from ..plugins import ENTRY_POINT_GROUP, get_plugin_manager, registries

    regs = registries()
    pm = get_plugin_manager()
    dists = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dists[ep.name] = (ep.value, f"{dist.name} {dist.version}" if dist is not None else "?")
    owned: dict[str, list[str]] = {}
    for kind in ("architectures", "layouts", "discriminators", "losses", "recipes"):
        reg = getattr(regs, kind)
        for name in reg.names():
            owned.setdefault(reg.owner(name), []).append(f"{kind[:-1] if kind != 'losses' else 'loss'} {name}")
    t = Table(title=f"gradguide plugins (entry-point group '{ENTRY_POINT_GROUP}')")
    for col in ("plugin", "module", "distribution", "registers"):
        t.add_column(col)
    names = sorted({n for n, _ in pm.list_name_plugin()} | set(dists))
    broken = {p.plugin for p in regs.problems}
    for name in names:
        module, dist = dists.get(name, ("(registered in code)", "-"))
        what = ", ".join(owned.get(name, [])) or ("[red]failed[/red]" if name in broken else "-")
        t.add_row(name, module, dist, what)
    con = Console()
    con.print(t)
    _print_problems(con, regs.problems)
    return 0


def _print_problems(con, problems) -> None:
    for p in problems:
        con.print(f"[yellow]plugin {p.plugin!r} skipped:[/yellow] {p.reason}", highlight=False, markup=True)
