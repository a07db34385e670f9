"""Command modules of the ``gradguide`` CLI (see :mod:`gradguide.cli`), and arguments they share."""
from __future__ import annotations

import argparse

from ..devices import AUTO as AUTO_DEVICE
from ..devices import resolve_device


def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--precision`` for commands that run a model."""
    p.add_argument("--device", default=AUTO_DEVICE, help="auto, cpu, cuda, cuda:1 or mps (default auto: cuda when present, else cpu)")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="model precision (default fp32)")


def resolve_device_arg(device: str | None) -> str:
    """``auto`` (the default) -> ``cuda`` when a CUDA device is present, else ``cpu``
    (:func:`gradguide.devices.resolve_device`); other names are checked where they are used."""
    if device in (None, "", AUTO_DEVICE):
        return str(resolve_device(device))
    return device


def make_console(stderr: bool = True):
    """A rich console whose lines are never wrapped (piped output keeps one message per line)
    and that writes no escape codes unless it is a terminal."""
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)
