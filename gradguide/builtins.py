"""gradguide's own plugin: the guided architectures (``spsr``, ``guided``),
discriminators, losses and recipes.

The host registers it first, directly (:data:`gradguide.plugins.BUILTIN_PLUGINS`), through
the same hooks a third-party plugin implements. It sits at the top of the layers: it
may import anything, nothing in the core imports it.
"""
from __future__ import annotations

from .discriminators import builtin_discriminators
from .hookspecs import hookimpl
from .losses import builtin_losses
from .registry import Architecture, DiscriminatorEntry, LossEntry, RecipeEntry
from .spsr import ARCHITECTURE as SPSR
from .train.recipe import builtin_recipes
from .wrap import ARCHITECTURE as GUIDED


@hookimpl
def gradguide_backbones() -> list[Architecture]:
    return [SPSR, GUIDED]


@hookimpl
def gradguide_discriminators() -> list[DiscriminatorEntry]:
    return builtin_discriminators()


@hookimpl
def gradguide_losses() -> list[LossEntry]:
    return builtin_losses()


@hookimpl
def gradguide_recipes() -> list[RecipeEntry]:
    return builtin_recipes()
