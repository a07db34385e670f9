"""The plugin manager: built lazily, on first use, never at import.

The host registers gradguide's own plugins first, directly, by module name
(:data:`BUILTIN_PLUGINS`), whatever entry-point names other distributions use; then
every other plugin of the setuptools entry-point group ``gradguide``, by name. A name a
built-in registered can never be replaced: a later duplicate is reported as the later
plugin's problem. A plugin that fails to import, whose hook raises (``SystemExit`` and
``KeyboardInterrupt`` included), or whose hook returns something that is not a list of
the expected entry type, is recorded in :func:`problems` with its name and reason and
skipped; the others keep working.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pluggy
from torch import nn

from .errors import DuplicateNameError
from .hookspecs import HOOKS, PROJECT, GradguideSpec
from .registry import (
    Architecture,
    CheckpointLayout,
    DiscriminatorEntry,
    LossEntry,
    PluginProblem,
    RecipeEntry,
    Registry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_PLUGINS",
    "PluginProblem",
    "Registries",
    "get_plugin_manager",
    "new_plugin_manager",
    "use_plugin_manager",
    "registries",
    "problems",
    "reset",
    "find_architecture",
]

ENTRY_POINT_GROUP = "gradguide"

#: gradguide's own plugins, registered first by the host: plugin name -> module
BUILTIN_PLUGINS: dict[str, str] = {
    "builtin_core": "gradguide.builtins",
    "builtin_backbones": "gradguide_backbones.plugin",
}

#: how a hook's entry type is named in problem reports
_TYPE_NAMES = {Architecture: "BackboneEntry (gradguide.plugin.Architecture)"}


@dataclass
class Registries:
    """What the plugins registered. ``architectures`` is the one architecture registry;
    ``backbones`` (the wrappable ones) and ``layouts`` (every entry's checkpoint layouts)
    are views of it."""

    architectures: Registry[Architecture] = field(default_factory=lambda: Registry("architecture"))
    discriminators: Registry[DiscriminatorEntry] = field(default_factory=lambda: Registry("discriminator"))
    losses: Registry[LossEntry] = field(default_factory=lambda: Registry("loss"))
    recipes: Registry[RecipeEntry] = field(default_factory=lambda: Registry("recipe"))
    problems: list[PluginProblem] = field(default_factory=list)
    backbones: Registry[Architecture] = field(default_factory=lambda: Registry("backbone"))
    layouts: Registry[CheckpointLayout] = field(default_factory=lambda: Registry("checkpoint layout"))


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pm: Optional[pluggy.PluginManager] = None
        self.regs: Optional[Registries] = None
        self.load_problems: list[PluginProblem] = []


_state = _State()


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def new_plugin_manager(*, entry_points: bool = True) -> tuple[pluggy.PluginManager, list[PluginProblem]]:
    """Build a fresh plugin manager: the built-ins first, then (with ``entry_points``)
    every plugin of the ``gradguide`` group, isolating failures; returns ``(pm, problems)``."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(GradguideSpec)
    found: list[PluginProblem] = []
    for name, module in BUILTIN_PLUGINS.items():
        try:
            pm.register(importlib.import_module(module), name=name)
        except BaseException as exc:  # noqa: BLE001 - a broken install must not break the rest
            found.append(PluginProblem(name, f"failed to load built-in {module!r}: {_why(exc)}"))
    if entry_points:
        builtin_modules = set(BUILTIN_PLUGINS.values())
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.value in builtin_modules:
                continue  # registered above
            if ep.name in BUILTIN_PLUGINS or pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                found.append(PluginProblem(ep.name, f"entry point {ep.value!r}: the plugin name {ep.name!r} is taken; skipped"))
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt from a plugin too
                found.append(PluginProblem(ep.name, f"failed to load {ep.value!r}: {_why(exc)}"))
    return pm, found


def get_plugin_manager() -> pluggy.PluginManager:
    with _state.lock:
        if _state.pm is None:
            _state.pm, _state.load_problems = new_plugin_manager()
            _state.regs = None
        return _state.pm


def reset() -> None:
    """Forget the current plugin manager and registries (the next use rebuilds them)."""
    with _state.lock:
        _state.pm = None
        _state.regs = None
        _state.load_problems = []


@contextlib.contextmanager
def use_plugin_manager(pm: pluggy.PluginManager, problems: Optional[list[PluginProblem]] = None) -> Iterator[pluggy.PluginManager]:
    """Temporarily make ``pm`` the active plugin manager (tests use a fresh one each)."""
    with _state.lock:
        saved = (_state.pm, _state.regs, _state.load_problems)
        _state.pm, _state.regs, _state.load_problems = pm, None, list(problems or [])
    try:
        yield pm
    finally:
        with _state.lock:
            _state.pm, _state.regs, _state.load_problems = saved


def _plugin_order(name: str) -> tuple[int, str]:
    builtins = list(BUILTIN_PLUGINS)
    return (builtins.index(name), "") if name in builtins else (len(builtins), name)


#: hooks that no longer exist -> where their entries go now
_RETIRED_HOOKS = {
    "gradguide_checkpoint_layouts": "layouts belong to their architecture: Architecture(..., layouts=(CheckpointLayout(...),))",
}


def _collect(pm: pluggy.PluginManager, load_problems: list[PluginProblem]) -> Registries:
    regs = Registries()
    regs.problems.extend(load_problems)
    for name, plugin in pm.list_name_plugin():
        for hook, instead in _RETIRED_HOOKS.items():
            if callable(getattr(plugin, hook, None)):
                regs.problems.append(PluginProblem(name, f"{hook}() is not a gradguide hook any more (ignored): {instead}"))
    for attr, (hook_name, entry_type) in HOOKS.items():
        registry: Registry[Any] = getattr(regs, attr)
        hook = getattr(pm.hook, hook_name)
        for impl in sorted(hook.get_hookimpls(), key=lambda i: _plugin_order(i.plugin_name)):
            name = impl.plugin_name
            try:
                result = impl.function()
            except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt from a plugin too
                regs.problems.append(PluginProblem(name, f"{hook_name}() raised {_why(exc)}"))
                continue
            if result is None:
                continue
            if not isinstance(result, (list, tuple)) or not all(isinstance(e, entry_type) for e in result):
                what = _TYPE_NAMES.get(entry_type, entry_type.__name__)
                regs.problems.append(PluginProblem(name, f"{hook_name}() must return a list of {what}, got {result!r:.120}"))
                continue
            for entry in result:
                try:
                    registry.add(entry.name, entry, owner=name)
                except DuplicateNameError as exc:
                    regs.problems.append(PluginProblem(name, str(exc)))
                    continue
                if attr == "architectures":
                    for layout in entry.layouts:
                        try:
                            regs.layouts.add(layout.name, layout, owner=name)
                        except DuplicateNameError as exc:
                            regs.problems.append(PluginProblem(name, str(exc)))
    regs.backbones = regs.architectures.select(lambda e: e.is_backbone, "backbone")
    return regs


def registries() -> Registries:
    """The registries built from the active plugin manager (cached until :func:`reset`)."""
    with _state.lock:
        pm = get_plugin_manager()
        if _state.regs is None:
            _state.regs = _collect(pm, _state.load_problems)
        return _state.regs


def problems() -> list[PluginProblem]:
    return list(registries().problems)


def find_architecture(model: nn.Module) -> Optional[tuple[str, Architecture]]:
    """``(name, entry)`` of the registered architecture covering ``model``'s class, or None:
    the one lookup :func:`gradguide.wrap` and :func:`gradguide.save` share."""
    for name, entry in registries().architectures.items():
        if entry.covers(model):
            return name, entry
    return None
