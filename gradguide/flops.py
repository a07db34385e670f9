"""FLOP counting with :class:`torch.utils.flop_counter.FlopCounterMode` (PyTorch's own
counter: convolutions and matmuls, 2 FLOPs per multiply-add), so figures agree with
what other PyTorch tools report."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_params", "FusionCost", "fusion_cost_table", "fusion_costs"]


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


# ---------------------------------------------------------------------------------
# guided vs backbone (issue #3): what `gradguide inspect` and bench/inference.py print
@dataclass(frozen=True)
class FusionCost:
    """Cost of one variant: ``name`` is ``"backbone"`` or a fusion name (``"paper"``, ``"lr"``)."""

    name: str
    flops: int
    params: int
    ratio: float  # flops / backbone flops


def fusion_cost_table(
    model: nn.Module,
    input_shape: Sequence[int] = (1, 3, 32, 32),
    *,
    fusions: Optional[Sequence[str]] = None,
    spec=None,
    **wrap_kwargs,
) -> list[FusionCost]:
    """FLOPs and parameters of a backbone and of ``wrap(backbone, fusion=f)`` for each
    fusion its spec supports (default: ``"paper"`` and ``"lr"`` where possible).

    ``model`` is a plain backbone or a :class:`~gradguide.wrap.GuidedSR` (its backbone is
    unwrapped from a copy); it is never modified (every variant wraps a deep copy) and
    is measured in eval mode. Returns the backbone's row first. Raises
    :class:`~gradguide.errors.SpecError` when no spec is given or registered.
    """
    from .wrap import GuidedSR, spec_for, wrap

    if isinstance(model, GuidedSR):
        spec = spec or model.spec
        model = copy.deepcopy(model).unwrap()
    spec = spec or spec_for(model)
    model = copy.deepcopy(model).eval()
    base = count_flops(model, input_shape)
    out = [FusionCost("backbone", base, count_params(model), 1.0)]
    for f in fusions or spec.fusions():
        guided = wrap(copy.deepcopy(model), spec, fusion=f, **wrap_kwargs).eval()
        fl = count_flops(guided, input_shape)
        out.append(FusionCost(f, fl, count_params(guided), fl / base if base else float("nan")))
    return out


def fusion_costs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32), **kwargs) -> dict[str, int]:
    """``{"backbone": flops, "paper": flops, "lr": flops}`` (see :func:`fusion_cost_table`);
    only ``{"backbone": ...}`` when no guidance spec is known for ``model``."""
    from .errors import SpecError

    try:
        return {c.name: c.flops for c in fusion_cost_table(model, input_shape, **kwargs)}
    except SpecError:
        return {"backbone": count_flops(copy.deepcopy(model).eval(), input_shape)}
