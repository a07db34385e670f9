"""The public API for plugin authors: everything a plugin imports comes from here.

A plugin is a module (advertised in the setuptools entry-point group ``gradguide``)
whose functions, decorated with :data:`hookimpl`, implement some of these hooks. Each
returns a list of entries; the contract below is generated from
:class:`gradguide.hookspecs.GradguideSpec`, where each hook is typed once.

{hooks}

Entries: :class:`Architecture` (a model: factory, scale argument, guidance spec,
checkpoint :class:`CheckpointLayout` objects whose ``convert`` returns
:class:`Converted`), :class:`DiscriminatorEntry`, :class:`LossEntry` (``term=True``: an
extra :class:`~gradguide.losses.SPSRLoss` term, ``forward(out: SROutput, hr)``),
:class:`RecipeEntry`.

Guidance: :class:`GuidanceSpec`, :class:`Tap`, :func:`even_taps`.
Layout helpers: :func:`count_indexed`, :func:`rename`, :func:`infer_scale`,
:func:`shuffle_factor`. Errors: :class:`GradguideError` and its subclasses.

Names registered by gradguide's built-ins cannot be replaced; a duplicate, an exception
or a wrong return type is reported by ``gradguide plugins`` under the plugin's name.
"""
from __future__ import annotations

import typing

from .errors import CheckpointError, GradguideError, PluginError, SpecError
from . import hookspecs
from .hookspecs import GradguideSpec, hookimpl
from .layouts import count_indexed, infer_scale, rename, shuffle_factor
from .registry import (
    Architecture,
    BackboneEntry,
    CheckpointLayout,
    Converted,
    DiscriminatorEntry,
    LossEntry,
    RecipeEntry,
)
from .spec import GuidanceSpec, Tap, even_taps
from .types import SROutput

__all__ = [
    "hookimpl",
    "Architecture",
    "BackboneEntry",
    "CheckpointLayout",
    "Converted",
    "DiscriminatorEntry",
    "LossEntry",
    "RecipeEntry",
    "GuidanceSpec",
    "Tap",
    "even_taps",
    "SROutput",
    "count_indexed",
    "rename",
    "infer_scale",
    "shuffle_factor",
    "GradguideError",
    "CheckpointError",
    "SpecError",
    "PluginError",
    "hook_contracts",
]


def hook_contracts() -> dict[str, tuple[str, str]]:
    """``{hook name: (return type, description)}``, read from the hook specifications."""
    out = {}
    for name in sorted(vars(GradguideSpec)):
        if name.startswith("gradguide_"):
            fn = getattr(GradguideSpec, name)
            ret = typing.get_type_hints(fn, vars(hookspecs))["return"]
            args = typing.get_args(ret)
            rtype = f"list[{args[0].__name__}]" if args else getattr(ret, "__name__", str(ret))
            out[name] = (rtype, " ".join((fn.__doc__ or "").split()))
    return out


__doc__ = (__doc__ or "").replace(
    "{hooks}", "\n".join(f"* ``{n}() -> {r}``: {d}" for n, (r, d) in hook_contracts().items())
)
