"""Checkpoint key layouts: the helpers layouts are written with, detection over every
registered layout, conversion, and loading a state dict into a module by name.

A layout belongs to an :class:`~gradguide.registry.Architecture` entry (its ``layouts``);
:func:`detect_layout` tries every registered layout by priority, its data (``keys``,
``absent``) first. The helpers here are the only place hyperparameters are inferred from
tensor shapes (:func:`count_indexed`, :func:`infer_scale`, :func:`shuffle_factor`), and
plugin authors reach them through :mod:`gradguide.plugin`.
"""
from __future__ import annotations

import re
import warnings
from typing import Mapping, Optional, Sequence

from torch import Tensor, nn

from .errors import CheckpointError
from .fileio import one_line
from .plugins import registries
from .registry import CheckpointLayout, Converted

__all__ = [
    "count_indexed",
    "rename",
    "infer_scale",
    "shuffle_factor",
    "detect_layout",
    "convert_state_dict",
    "match_keys",
    "load_matching",
    "key_names",
]


# --------------------------------------------------------------------------------- helpers
def count_indexed(sd: Mapping[str, Tensor], prefix: str) -> int:
    """Number of distinct ``N`` in keys ``{prefix}N.…``."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for k in sd if (m := pat.match(k))})


def rename(sd: Mapping[str, Tensor], rules: Sequence[tuple[str, str]]) -> tuple[dict[str, Tensor], list[str]]:
    """Apply the first matching ``(regex, replacement)`` to each key; returns the renamed
    dict and the keys no rule matched."""
    out, unmatched = {}, []
    compiled = [(re.compile(p), r) for p, r in rules]
    for k, v in sd.items():
        for pat, rep in compiled:
            if pat.fullmatch(k):
                out[pat.sub(rep, k)] = v
                break
        else:
            unmatched.append(k)
    return out, unmatched


def shuffle_factor(out_channels: int, in_channels: int) -> int:
    """The factor of a pixel-shuffle stage from its conv: ``out = in * f^2``."""
    ratio = int(out_channels) // max(int(in_channels), 1)
    f = int(round(ratio ** 0.5))
    if f < 1 or f * f * int(in_channels) != int(out_channels):
        raise ValueError(f"a pixel-shuffle conv with {out_channels} outputs for {in_channels} channels has no integer factor")
    return f


def infer_scale(stages: Sequence[Optional[int]], meta: Mapping[str, str], scale: Optional[int]) -> int:
    """The scale of a model from its upsampling stages: the one rule every layout uses.

    ``stages`` has one factor per upsampling stage, ``None`` where the shapes do not
    tell (a nearest + conv stage: x2 or x3). The caller's ``scale``, then a ``scale``
    metadata entry, win over the shapes. A single unknown stage is x2 with a warning
    (pass ``scale=3`` for x3); several unknown stages are x2 each.
    """
    if scale is not None:
        return int(scale)
    if "scale" in meta:
        return int(meta["scale"])
    if not stages:
        raise ValueError("no upsampling stages found")
    if len(stages) == 1 and stages[0] is None:
        warnings.warn(
            "checkpoint: one upsampling stage: x2 or x3 cannot be told apart from the shapes; "
            "assuming x2 (pass scale=3 to load an x3 model)",
            stacklevel=3,
        )
    out = 1
    for f in stages:
        out *= 2 if f is None else int(f)
    return out


def key_names(keys: Sequence[str], n: int = 6) -> str:
    """``a, b, c (+N more)``."""
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# ---------------------------------------------------------------------------- detection
def _layouts() -> list[CheckpointLayout]:
    return sorted((l for _, l in registries().layouts.items()), key=lambda l: -l.priority)


def detect_layout(sd: Mapping[str, Tensor], meta: Mapping[str, str]) -> CheckpointLayout:
    """The highest-priority registered layout matching ``sd``, or :class:`CheckpointError`."""
    layouts = _layouts()
    for layout in layouts:
        try:
            if layout.matches(sd, meta):
                return layout
        except Exception:  # noqa: BLE001 - a plugin's detect must not break detection
            continue
    first = ", ".join(list(sd)[:4])
    names = ", ".join(l.name for l in layouts)
    raise CheckpointError(f"unknown architecture: no known layout ({names}) matches keys like {first}")


def convert_state_dict(
    sd: Mapping[str, Tensor], meta: Mapping[str, str], scale: Optional[int] = None
) -> tuple[CheckpointLayout, str, dict, dict, dict]:
    """``(layout, arch, config, state_dict, ignored)`` for a state dict of any registered layout."""
    layout = detect_layout(sd, meta)
    try:
        config, out, ignored = Converted(*layout.convert(sd, meta, scale))
    except CheckpointError:
        raise
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise CheckpointError(f"layout {layout.name}: cannot convert: {type(exc).__name__}: {one_line(exc)}") from None
    return layout, layout.arch, dict(config), dict(out), dict(ignored)


# ------------------------------------------------------------------------------ loading
def match_keys(
    own: Mapping[str, Tensor], sd: Mapping[str, Tensor], *, strict: bool, what: str
) -> tuple[list[str], list[str]]:
    """Compare ``sd`` with a module's state dict ``own`` (shapes only: ``own`` may live on
    the meta device); returns ``(missing, unexpected)``.

    A shape mismatch always raises :class:`CheckpointError`; with ``strict`` so do missing
    or unexpected keys. The message starts with ``what`` and names the keys.
    """
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{what}: shape mismatch: {key_names(bad, 4)}")
    if strict and (missing or unexpected):
        parts = [f"missing: {key_names(missing)}" if missing else "", f"unexpected: {key_names(unexpected)}" if unexpected else ""]
        raise CheckpointError(f"{what}: {'; '.join(p for p in parts if p)}")
    return missing, unexpected


def load_matching(module: nn.Module, sd: Mapping[str, Tensor], *, strict: bool, what: str) -> tuple[int, list[str], list[str]]:
    """Load ``sd`` into ``module`` by name (checked by :func:`match_keys`); return
    ``(loaded, missing, unexpected)``."""
    own = module.state_dict()
    missing, unexpected = match_keys(own, sd, strict=strict, what=what)
    module.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return sum(1 for k in sd if k in own), missing, unexpected
