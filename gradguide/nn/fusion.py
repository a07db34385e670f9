"""Fusion blocks, and the fusion kinds as data.

``PaperFusion`` is SPSR's (Sec. 3.2.2) and runs at HR resolution, replacing the
backbone's final reconstruction conv. ``LRFusion`` is gradguide's efficient variant: it
injects the branch's LR features into the backbone's LR feature before upsampling, so
the backbone's own upsampler and reconstruction layers stay in place.

A fusion kind (:class:`FusionKind`) is one record in :data:`FUSIONS`: its name, where it
attaches (``placement``), its branch and fusion classes, their default block and branch
width. Adding a fusion means one record and its classes; :func:`gradguide.wrap` and
:meth:`gradguide.spec.GuidanceSpec.fusions` read the records.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal, Optional

import torch
from torch import Tensor, nn

from .blocks import BLOCKS, RRDB, BlockFactory, ResBlock, block_factory, conv3x3, lrelu
from .branch import GradientBranch, LRGradientBranch, ShuffleGradHead

__all__ = [
    "PaperFusion",
    "LRFusion",
    "LRGradientBranch",
    "ShuffleGradHead",
    "ResBlock",
    "FusionKind",
    "Placement",
    "FUSIONS",
    "BLOCKS",
    "block_factory",
]

#: where a fusion attaches: ``"hr"`` replaces the backbone's final layer (needs
#: ``spec.replace``), ``"lr"`` adds to the LR feature (needs ``spec.lr_feature``)
Placement = Literal["hr", "lr"]


class PaperFusion(nn.Module):
    """SPSR fusion at HR resolution.

    ``proj`` replaces the backbone's final conv (official ``HR_conv1_new``, nf -> nf);
    then ``block(cat(branch, proj(h)))`` (``f_block``, an RRDB at 2nf), ``reduce``
    (``f_concat``), ``hr_conv0`` + LeakyReLU (``f_HR_conv0``) and ``hr_conv1`` to the
    output channels (``f_HR_conv1``).

    Shapes: ``branch (B, cb, sH, sW)``, ``h (B, ch, sH, sW)`` -> ``(B, out, sH, sW)``.
    """

    placement: ClassVar[str] = "hr"

    def __init__(
        self,
        hr_channels: int,
        branch_channels: int,
        out_channels: int = 3,
        block: Optional[BlockFactory] = None,
    ) -> None:
        super().__init__()
        block = block or partial(RRDB, gc=32)
        c = hr_channels + branch_channels
        self.proj = conv3x3(hr_channels, hr_channels)
        self.block = block(c)
        self.reduce = conv3x3(c, hr_channels)
        self.hr_conv0 = conv3x3(hr_channels, hr_channels)
        self.hr_conv1 = conv3x3(hr_channels, out_channels)
        self.act = lrelu()

    @classmethod
    def from_spec(cls, spec: Any, branch_width: int, block: BlockFactory) -> "PaperFusion":
        return cls(spec.hr_channels, branch_width, spec.out_channels, block=block)

    def forward(self, branch: Tensor, h: Tensor) -> Tensor:
        x = self.reduce(self.block(torch.cat((branch, self.proj(h)), 1)))
        return self.hr_conv1(self.act(self.hr_conv0(x)))

    def warmup_modules(self) -> list[nn.Module]:
        """The official warm-up trains only the ``f_*`` modules (not ``HR_conv1_new``)."""
        return [self.block, self.reduce, self.hr_conv0, self.hr_conv1]


class LRFusion(nn.Module):
    """Efficient fusion at LR resolution: ``f + out(block(in(cat(branch, f))))``.

    The last conv is zero-initialised, so a freshly wrapped pretrained backbone gives
    exactly its original output until the fusion has trained.

    Shapes: ``branch (B, cb, H, W)``, ``f (B, cf, H, W)`` -> ``(B, cf, H, W)``.
    """

    placement: ClassVar[str] = "lr"

    def __init__(
        self,
        lr_channels: int,
        branch_channels: int,
        block: Optional[BlockFactory] = None,
        width: Optional[int] = None,
    ) -> None:
        super().__init__()
        width = width or lr_channels
        block = block or BLOCKS["rdb"]
        self.inp = conv3x3(lr_channels + branch_channels, width)
        self.block = block(width)
        self.out = conv3x3(width, lr_channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.act = lrelu()

    @classmethod
    def from_spec(cls, spec: Any, branch_width: int, block: BlockFactory) -> "LRFusion":
        return cls(spec.lr_channels, branch_width, block=block)

    def forward(self, branch: Tensor, f: Tensor) -> Tensor:
        return f + self.out(self.block(self.act(self.inp(torch.cat((branch, f), 1)))))

    def warmup_modules(self) -> list[nn.Module]:
        return [self]


@dataclass(frozen=True)
class FusionKind:
    """One way to attach gradient guidance.

    Attributes:
        name: what ``wrap(fusion=...)``, recipes (``model.guidance``) and checkpoints say.
        placement: ``"hr"`` or ``"lr"`` (see :data:`Placement`).
        branch: the gradient-branch class; ``branch.from_spec(spec, width, block, upsampler)``.
        fusion: the fusion class; ``fusion.from_spec(spec, branch_width, block)``; it declares
            the same ``placement`` and has ``warmup_modules()``.
        block: default block name (:data:`~gradguide.nn.blocks.BLOCKS`) of branch and fusion.
        width: default branch width; ``None`` = the first tap's channels.
        description: one line.
    """

    name: str
    placement: Placement
    branch: type
    fusion: type
    block: str
    width: Optional[int]
    description: str = ""

    def default_width(self, spec: Any) -> int:
        return self.width or spec.taps[0].channels


#: every fusion kind, by name (the first one a spec supports is ``wrap``'s default)
FUSIONS: dict[str, FusionKind] = {
    k.name: k
    for k in (
        FusionKind("paper", "hr", GradientBranch, PaperFusion, "rrdb", None,
                   "SPSR's HR fusion replacing the final layer (paper-exact)"),
        FusionKind("lr", "lr", LRGradientBranch, LRFusion, "rdb", 32,
                   "efficient fusion at LR resolution before upsampling"),
    )
}
