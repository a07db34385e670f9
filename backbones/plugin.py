"""Built-in backbones as a gradguide plugin (``builtin_backbones``).

The host registers this module first, directly, through the same hook a third-party
plugin implements; each architecture entry carries its own checkpoint layouts.
RRDBNet is the core's (:mod:`gradguide.models.rrdb`); this plugin only registers it.
"""
from __future__ import annotations

from gradguide.plugin import Architecture, hookimpl

from . import edsr, rcan, rrdb, spandrel_models, srresnet, swinir


@hookimpl
def gradguide_backbones() -> list[Architecture]:
    return [
        *rrdb.backbone_entries(), *srresnet.backbone_entries(), *edsr.backbone_entries(),
        *rcan.backbone_entries(), *swinir.backbone_entries(), *spandrel_models.backbone_entries(),
    ]
