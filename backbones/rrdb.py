"""RRDBNet lives in the core (:mod:`gradguide.models.rrdb`: the SPSR generator is built on
it); this module re-exports it so ``from gradguide_backbones.rrdb import RRDBNet`` keeps
working, and the built-in plugin registers its architecture entry."""
from __future__ import annotations

from gradguide.models.rrdb import ARCHITECTURE, RRDBNet, rrdb_spec

__all__ = ["RRDBNet", "rrdb_spec", "backbone_entries"]


def backbone_entries() -> list:
    return [ARCHITECTURE]
