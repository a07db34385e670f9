"""Where gradient guidance attaches to a backbone, described as data."""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Optional

from torch import nn

from .errors import SpecError
from .nn.fusion import FUSIONS

__all__ = ["Tap", "GuidanceSpec", "even_taps"]


@dataclass(frozen=True)
class Tap:
    """A backbone feature the gradient branch reads.

    Attributes:
        name: module name (as in ``model.named_modules()``) whose output is tapped.
        channels: channels of that output.
        stride: its downsampling relative to the LR input (1 = LR resolution).
    """

    name: str
    channels: int
    stride: int = 1


@dataclass(frozen=True)
class GuidanceSpec:
    """How to attach gradient guidance to a backbone.

    Attributes:
        taps: features for the gradient branch, in order.
        replace: the final reconstruction layer; ``fusion="paper"`` replaces it, and its
            input is the HR feature that is fused (unless ``hr_feature`` is given).
            ``None`` for backbones without an HR feature (e.g. a direct pixel-shuffle
            head): only ``fusion="lr"`` applies to them.
        hr_channels: channels of the HR feature (``None`` with ``replace=None``).
        scale: the backbone's upscaling factor.
        lr_feature: module whose output is the LR feature just before upsampling
            (``fusion="lr"`` adds the fused features there).
        lr_channels: channels of ``lr_feature``'s output.
        hr_feature: optional module whose output is the HR feature to fuse.
        in_channels / out_channels: image channels in and out.
    """

    taps: tuple[Tap, ...]
    replace: Optional[str]
    hr_channels: Optional[int]
    scale: int
    lr_feature: Optional[str] = None
    lr_channels: Optional[int] = None
    hr_feature: Optional[str] = None
    in_channels: int = 3
    out_channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "taps", tuple(t if isinstance(t, Tap) else Tap(**t) for t in self.taps))
        if not self.taps:
            raise SpecError("GuidanceSpec.taps: at least one tap is needed")
        if self.scale < 1:
            raise SpecError(f"GuidanceSpec.scale: must be >= 1, got {self.scale}")
        for t in self.taps:
            if t.stride != 1:
                raise SpecError(f"GuidanceSpec.taps: tap {t.name!r} has stride {t.stride}; only LR-resolution (stride 1) taps are supported")
        if self.replace is not None and not self.hr_channels:
            raise SpecError("GuidanceSpec.hr_channels: needed when replace is given")
        if self.replace is None and not self.lr_feature:
            raise SpecError("GuidanceSpec: give replace (for fusion='paper') or lr_feature (for fusion='lr'), or both")
        if self.lr_feature and not self.lr_channels:
            raise SpecError("GuidanceSpec.lr_channels: needed when lr_feature is given")

    def module_names(self) -> list[str]:
        names = [t.name for t in self.taps]
        names += [n for n in (self.replace, self.lr_feature, self.hr_feature) if n]
        return names

    def validate(self, model: nn.Module) -> None:
        """Raise :class:`SpecError` naming each module the spec refers to that ``model`` lacks."""
        known = dict(model.named_modules())
        for name in self.module_names():
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise SpecError(f"spec names module {name!r}, which {type(model).__name__} does not have{hint}")

    def supports(self, placement: str) -> bool:
        """Whether a fusion of ``placement`` fits: ``"hr"`` needs ``replace``, ``"lr"`` needs
        ``lr_feature``."""
        return bool(self.replace if placement == "hr" else self.lr_feature if placement == "lr" else False)

    def fusions(self) -> list[str]:
        """The fusion kinds (:data:`gradguide.nn.fusion.FUSIONS`) this spec supports, in order."""
        return [name for name, kind in FUSIONS.items() if self.supports(kind.placement)]

    def to_dict(self) -> dict:
        """Plain JSON-able data (``from_dict`` inverts it)."""
        d = asdict(self)
        d["taps"] = [dict(t) for t in d["taps"]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GuidanceSpec":
        d = dict(d)
        d["taps"] = tuple(Tap(**t) for t in d["taps"])
        return cls(**d)


def even_taps(num_blocks: int, max_taps: int = 4) -> list[int]:
    """Indices (0-based) of the blocks to tap: ``n = min(max_taps, num_blocks)`` taps after
    blocks ``step, 2*step, ..., n*step`` (1-based) with ``step = num_blocks // n``.

    For the paper's 23 RRDBs this gives blocks 5, 10, 15, 20 (indices 4, 9, 14, 19).
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    n = min(max_taps, num_blocks)
    step = num_blocks // n
    return [step * k - 1 for k in range(1, n + 1)]


