"""Shared argument checks and reductions of the loss functions (float32 arithmetic)."""
from __future__ import annotations

import math
from typing import Literal, get_args

from torch import Tensor

__all__ = ["Criterion", "Reduction", "CRITERIA", "REDUCTIONS"]

Criterion = Literal["l1", "mse", "charbonnier"]
Reduction = Literal["mean", "sum", "none"]
CRITERIA: tuple[str, ...] = get_args(Criterion)
REDUCTIONS: tuple[str, ...] = get_args(Reduction)


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value


def _check_pair(a: Tensor, b: Tensor, what: str, a_name: str = "input", b_name: str = "target") -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{what}: {a_name} and {b_name} must be tensors")
    if a.shape != b.shape:
        raise ValueError(f"{what}: {a_name} shape {tuple(a.shape)} != {b_name} shape {tuple(b.shape)}")


def _check_image(x: Tensor, what: str, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what}: {name} must have shape (B, C, H, W), got {shape}")


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_weight(weight: float, what: str) -> float:
    w = float(weight)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"{what}: weight must be a finite number >= 0, got {weight!r}")
    return w
