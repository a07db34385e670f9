"""The paper-exact SPSR generator: RRDBNet + gradient branch + HR fusion.

``create_spsr(nf=64, nb=23, gc=32, scale=4)`` builds the architecture of the official
implementation (taps after RRDB 5/10/15/20, RRDB gradient blocks at 2nf with gc=32,
RRDB fusion at 2nf); the official checkpoint layout loads into it through
:func:`gradguide.load`, reproducing the reference outputs. It is exactly
``wrap(RRDBNet(...), fusion="paper")``, recorded as the ``"spsr"`` architecture.

Taps for other ``nb``: :func:`gradguide.spec.even_taps` (``n = min(4, nb)`` taps after
blocks ``k * (nb // n)``, k = 1..n).
"""
from __future__ import annotations

from .wrap import GuidedSR, wrap

__all__ = ["create_spsr", "SPSR_BRANCH_GC"]

#: the official code builds the branch and fusion RRDBs with a fixed growth of 32
#: (``wrap``'s ``"rrdb"`` block, whatever ``gc`` the trunk uses)
SPSR_BRANCH_GC = 32


def create_spsr(*, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4, in_nc: int = 3, out_nc: int = 3) -> GuidedSR:
    """Build the SPSR generator. ``forward(lr) -> SROutput(sr, grad, lr_grad)``."""
    from gradguide_backbones.rrdb import RRDBNet, rrdb_spec

    backbone = RRDBNet(in_nc=in_nc, out_nc=out_nc, nf=nf, nb=nb, gc=gc, scale=scale)
    model = wrap(backbone, rrdb_spec(backbone), fusion="paper", branch_block="rrdb", fusion_block="rrdb")
    model.config = {"arch": "spsr", "nf": nf, "nb": nb, "gc": gc, "scale": scale, "in_nc": in_nc, "out_nc": out_nc}
    return model
