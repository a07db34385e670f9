"""pluggy hook specifications. Every hook is prefixed ``gradguide_``.

A plugin is any module or object with functions of these names decorated with
:data:`hookimpl`, advertised under the setuptools entry-point group ``gradguide``.
gradguide's own backbones, discriminators, losses and recipes register exactly the
same way (``gradguide.builtins`` and ``gradguide_backbones.plugin``).

Each hook returns a list of entries (see :mod:`gradguide.registry`). An entry
whose name is already taken is reported as a conflict, never silently replaced.
"""
from __future__ import annotations

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT", "GradguideSpec"]

PROJECT = "gradguide"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class GradguideSpec:
    @hookspec
    def gradguide_backbones(self) -> list:
        """Return :class:`gradguide.registry.BackboneEntry` objects: a model factory, the
        model classes it covers, their :class:`gradguide.spec.GuidanceSpec` and their
        checkpoint layouts."""

    @hookspec
    def gradguide_checkpoint_layouts(self) -> list:
        """Return :class:`gradguide.registry.CheckpointLayout` objects (detect + convert)."""

    @hookspec
    def gradguide_discriminators(self) -> list:
        """Return :class:`gradguide.registry.DiscriminatorEntry` objects."""

    @hookspec
    def gradguide_losses(self) -> list:
        """Return :class:`gradguide.registry.LossEntry` objects."""

    @hookspec
    def gradguide_recipes(self) -> list:
        """Return :class:`gradguide.registry.RecipeEntry` objects (TOML recipes)."""
