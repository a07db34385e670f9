"""Command modules of the ``gradguide`` CLI (see :mod:`gradguide.cli`), and arguments they share."""
from __future__ import annotations

import argparse


def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--precision`` for commands that run a model."""
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default cpu)")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="model precision (default fp32)")
