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
    "gradguide.commands.degrade",    # degrade
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


class _Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a mistyped flag or command (``--save-grads`` ->
    ``--save-grad``) and error lines that are never wrapped."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extras = super().parse_known_args(args, namespace)
        if extras and self.prog == "gradguide":
            sub = getattr(ns, "_subparser", None) or self
            sub.error(_unrecognized(extras, sub))
        return ns, extras

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {_hint(message, self)}\n")
        sys.exit(2)


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings]


def _unrecognized(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    import difflib

    parts = []
    for x in extras:
        flag = x.split("=", 1)[0]
        close = difflib.get_close_matches(flag, _option_strings(parser), n=1, cutoff=0.6) if flag.startswith("-") else []
        parts.append(f"{x} (did you mean {close[0]}?)" if close else x)
    return f"unrecognized arguments: {' '.join(parts)}"


def _hint(message: str, parser: argparse.ArgumentParser) -> str:
    """Add a suggestion to argparse's "invalid choice" for commands."""
    import difflib
    import re

    m = re.match(r"argument COMMAND: invalid choice: '([^']*)'", message)
    if m:
        names = [n for a in parser._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices]
        close = difflib.get_close_matches(m.group(1), names, n=1, cutoff=0.6)
        if close:
            return f"unknown command {m.group(1)!r} (did you mean {close[0]!r}?)"
        return f"unknown command {m.group(1)!r} (commands: {', '.join(names)})"
    return message


def build_parser() -> argparse.ArgumentParser:
    fmt = _formatter()
    parser = _Parser(
        prog="gradguide",
        description="Gradient guidance (SPSR) for any PyTorch super-resolution network.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_SubParser)
    for modname in COMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:  # command group not written yet
                continue
            raise
        mod.register(sub, fmt)
    return parser


class _SubParser(_Parser):
    """A command's parser: records itself in the namespace so that the top-level parser
    can suggest that command's own flags."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extras = argparse.ArgumentParser.parse_known_args(self, args, namespace)
        ns._subparser = self
        return ns, extras


def error_line(exc: BaseException) -> str:
    """The one line shown for an error: no ANSI codes, no line breaks, no traceback."""
    from .errors import GradguideError
    from .fileio import one_line

    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    if isinstance(exc, OSError) and not isinstance(exc, GradguideError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return one_line(f"{where}{exc.strerror}", limit=400)
    return one_line(msg, limit=400) or type(exc).__name__


class _one_line_warnings:
    """Show each warning as one ``warning: ...`` line (no source line, no file:lineno of
    gradguide's or torch's code); each distinct message once."""

    def __init__(self, console) -> None:
        self.console = console
        self.seen: set[str] = set()

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # libraries' notes to developers
        warnings.showwarning = self._show
        return self

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        from rich.markup import escape

        from .fileio import one_line

        text = one_line(message, limit=400)
        if text not in self.seen:
            self.seen.add(text)
            self.console.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False)

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rich.markup import escape

    from .commands import make_console
    from .errors import GradguideError

    err = make_console()
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
        with _one_line_warnings(err):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]")
        return 130
    except (GradguideError, FileNotFoundError, ValueError, KeyError, TypeError, RuntimeError, OSError) as exc:
        if isinstance(exc, GradguideError) or not getattr(args, "debug", False):
            err.print(f"[bold red]error:[/bold red] {escape(error_line(exc))}", highlight=False)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
