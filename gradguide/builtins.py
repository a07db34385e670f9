"""gradguide's own plugin: discriminators, losses, checkpoint layouts and recipes.

Registered through the ``gradguide`` entry-point group like any third-party plugin.
Imports of heavy modules happen inside the hooks, so discovering plugins stays cheap.
"""
from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl
def gradguide_checkpoint_layouts() -> list:
    from .checkpoints import builtin_layouts

    return builtin_layouts()


@hookimpl
def gradguide_discriminators() -> list:
    from .discriminators import builtin_discriminators

    return builtin_discriminators()


@hookimpl
def gradguide_losses() -> list:
    from .losses import builtin_losses

    return builtin_losses()


@hookimpl
def gradguide_recipes() -> list:
    from .train.recipe import builtin_recipes

    return builtin_recipes()
