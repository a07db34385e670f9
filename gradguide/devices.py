"""The one device rule, for training, inference and evaluation alike."""
from __future__ import annotations

from typing import Optional, Union

import torch

from .errors import DeviceError

__all__ = ["AUTO", "resolve_device"]

#: the device name that means "CUDA when present, else the CPU"
AUTO = "auto"


def resolve_device(
    device: Union[str, torch.device, None] = AUTO, *, local_rank: Optional[int] = None, what: str = "--device"
) -> torch.device:
    """``None``, ``""`` or ``"auto"``: CUDA when available, else the CPU; otherwise ``cpu``,
    ``cuda[:n]`` or ``mps``. A device that is not available (or not one of these) is a
    :class:`~gradguide.errors.DeviceError` naming ``what``. With ``local_rank`` a CUDA
    device without an index gets this process's local rank (distributed training)."""
    if device is None or device == "" or device == AUTO:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"{what} {device}: not a device ({exc})") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{what} {device}: CUDA is not available on this machine")
    if d.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"{what} {device}: MPS is not available on this machine")
    if d.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"{what} {device}: must be cpu, cuda or mps")
    if d.type == "cuda" and d.index is None and local_rank is not None:
        d = torch.device("cuda", local_rank)
    return d
