"""pluggy hook specifications: the contract of every hook, typed once, here.

A plugin is any module or object with functions of these names decorated with
:data:`hookimpl`, advertised under the setuptools entry-point group ``gradguide``.
gradguide's own entries register through the same hooks (``gradguide.builtins`` and
``gradguide_backbones.plugin``), but the host registers those two first, directly, so a
plugin can never take over a built-in name.

Each hook takes no arguments and returns a list of entries of one type (below). An entry
whose name is already taken is reported as the later plugin's problem, never silently
replaced. Plugin authors import all of this from :mod:`gradguide.plugin`.
"""
from __future__ import annotations

import pluggy

from .registry import Architecture, DiscriminatorEntry, LossEntry, RecipeEntry

__all__ = ["hookspec", "hookimpl", "PROJECT", "GradguideSpec", "HOOKS"]

PROJECT = "gradguide"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class GradguideSpec:
    @hookspec
    def gradguide_backbones(self) -> list[Architecture]:
        """Architectures: a factory, the classes it covers, the argument carrying the
        scale, their :class:`~gradguide.spec.GuidanceSpec` and checkpoint layouts."""

    @hookspec
    def gradguide_discriminators(self) -> list[DiscriminatorEntry]:
        """Discriminators: ``factory(in_channels=..., nf=..., [input_size=...])``."""

    @hookspec
    def gradguide_losses(self) -> list[LossEntry]:
        """Loss modules; ``term=True`` ones are also extra :class:`~gradguide.losses.SPSRLoss` terms."""

    @hookspec
    def gradguide_recipes(self) -> list[RecipeEntry]:
        """TOML training recipes, by name."""


#: registry attribute -> (hook name, entry type): what :mod:`gradguide.plugins` collects
HOOKS: dict[str, tuple[str, type]] = {
    "architectures": ("gradguide_backbones", Architecture),
    "discriminators": ("gradguide_discriminators", DiscriminatorEntry),
    "losses": ("gradguide_losses", LossEntry),
    "recipes": ("gradguide_recipes", RecipeEntry),
}
