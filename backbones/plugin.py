"""Built-in backbones as a gradguide plugin (entry point ``builtin_backbones``).

Registered exactly like a third-party plugin: the hooks below are all there is.
"""
from __future__ import annotations

from gradguide.hookspecs import hookimpl


@hookimpl
def gradguide_backbones() -> list:
    from . import edsr, rcan, rrdb, spandrel_models, srresnet, swinir

    return [
        *rrdb.backbone_entries(), *srresnet.backbone_entries(), *edsr.backbone_entries(),
        *rcan.backbone_entries(), *swinir.backbone_entries(), *spandrel_models.backbone_entries(),
    ]


@hookimpl
def gradguide_checkpoint_layouts() -> list:
    from . import edsr, rcan, srresnet, swinir

    return [*srresnet.checkpoint_layouts(), *edsr.checkpoint_layouts(), *rcan.checkpoint_layouts(), *swinir.checkpoint_layouts()]
