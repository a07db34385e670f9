"""FLOP counting with :class:`torch.utils.flop_counter.FlopCounterMode` (PyTorch's own
counter: convolutions and matmuls, 2 FLOPs per multiply-add), so figures agree with
what other PyTorch tools report."""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_params"]


def count_flops(model: nn.Module, input_shape: Union[Sequence[int], torch.Tensor]) -> int:
    """FLOPs of one forward pass of ``model`` on an input of ``input_shape`` (B, C, H, W)."""
    x = input_shape if isinstance(input_shape, torch.Tensor) else torch.zeros(tuple(input_shape))
    try:
        ref = next(model.parameters())
        x = x.to(device=ref.device, dtype=ref.dtype)
    except StopIteration:
        pass
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
