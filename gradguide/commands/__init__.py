"""Command modules of the ``gradguide`` CLI (see :mod:`gradguide.cli`), and arguments they share."""
from __future__ import annotations

import argparse

AUTO_DEVICE = "auto"


def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--precision`` for commands that run a model."""
    p.add_argument("--device", default=AUTO_DEVICE, help="auto, cpu, cuda, cuda:1 or mps (default auto: cuda when present, else cpu)")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="model precision (default fp32)")


def resolve_device_arg(device: str | None) -> str:
    """``auto`` (the default) -> ``cuda`` when a CUDA device is present, else ``cpu``."""
    if device in (None, "", AUTO_DEVICE):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def make_console(stderr: bool = True):
    """A rich console whose lines are never wrapped (piped output keeps one message per line)
    and that writes no escape codes unless it is a terminal."""
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)
