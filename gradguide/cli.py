"""The ``gradguide`` command line. The one place that knows every part of the package.

Each command lives in a module that defines ``register(subparsers)``; that function
adds its sub-parser and sets ``func`` (called with the parsed namespace, returns an
exit code). The table below is explicit: no module is imported by file name.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: command modules, in the order ``gradguide --help`` lists them
COMMAND_MODULES: tuple[str, ...] = (
    "gradguide.commands.models",     # convert, inspect
    "gradguide.commands.registry",   # backbones, plugins
    "gradguide.commands.training",   # train, recipes, demo
    "gradguide.commands.evaluation", # eval
    "gradguide.commands.inference",  # upscale, export
)


class _RichHelpFormatter(argparse.RawDescriptionHelpFormatter):
    pass


def _formatter() -> type[argparse.HelpFormatter]:
    try:  # rich-argparse is optional; rich itself renders errors and tables
        from rich_argparse import RichHelpFormatter  # type: ignore

        return RichHelpFormatter
    except Exception:
        return _RichHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    fmt = _formatter()
    parser = argparse.ArgumentParser(
        prog="gradguide",
        description="Gradient guidance (SPSR) for any PyTorch super-resolution network.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in COMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:  # command group not written yet
                continue
            raise
        mod.register(sub, fmt)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rich.console import Console
    from rich.markup import escape

    from .errors import GradguideError

    err = Console(stderr=True)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"gradguide {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]")
        return 130
    except (GradguideError, FileNotFoundError, ValueError, KeyError, TypeError, RuntimeError, OSError) as exc:
        if isinstance(exc, GradguideError) or not getattr(args, "debug", False):
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            err.print(f"[bold red]error:[/bold red] {escape(str(msg))}", highlight=False, soft_wrap=True)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
