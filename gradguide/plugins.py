"""The plugin manager: built lazily, on first use, never at import.

Plugins come from the setuptools entry-point group ``gradguide`` (gradguide's own
built-ins too). A plugin that fails to import, whose hook raises, or whose hook
returns something that is not a list of the expected entry type, is recorded in
:func:`problems` with its name and reason and skipped; the others keep working.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pluggy

from .hookspecs import PROJECT, GradguideSpec
from .registry import (
    BackboneEntry,
    CheckpointLayout,
    DiscriminatorEntry,
    DuplicateNameError,
    LossEntry,
    PluginProblem,
    RecipeEntry,
    Registry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Registries",
    "get_plugin_manager",
    "new_plugin_manager",
    "use_plugin_manager",
    "registries",
    "problems",
    "reset",
]

ENTRY_POINT_GROUP = "gradguide"

_HOOKS: dict[str, tuple[str, type]] = {
    "backbones": ("gradguide_backbones", BackboneEntry),
    "layouts": ("gradguide_checkpoint_layouts", CheckpointLayout),
    "discriminators": ("gradguide_discriminators", DiscriminatorEntry),
    "losses": ("gradguide_losses", LossEntry),
    "recipes": ("gradguide_recipes", RecipeEntry),
}


@dataclass
class Registries:
    backbones: Registry[BackboneEntry] = field(default_factory=lambda: Registry("backbone"))
    layouts: Registry[CheckpointLayout] = field(default_factory=lambda: Registry("checkpoint layout"))
    discriminators: Registry[DiscriminatorEntry] = field(default_factory=lambda: Registry("discriminator"))
    losses: Registry[LossEntry] = field(default_factory=lambda: Registry("loss"))
    recipes: Registry[RecipeEntry] = field(default_factory=lambda: Registry("recipe"))
    problems: list[PluginProblem] = field(default_factory=list)


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pm: Optional[pluggy.PluginManager] = None
        self.regs: Optional[Registries] = None
        self.load_problems: list[PluginProblem] = []


_state = _State()


def new_plugin_manager(*, entry_points: bool = True) -> tuple[pluggy.PluginManager, list[PluginProblem]]:
    """Build a fresh plugin manager. With ``entry_points`` it loads every plugin in the
    ``gradguide`` group, isolating failures; returns ``(pm, problems)``."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(GradguideSpec)
    found: list[PluginProblem] = []
    if entry_points:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                found.append(PluginProblem(ep.name, f"failed to load {ep.value!r}: {type(exc).__name__}: {exc}"))
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


def _collect(pm: pluggy.PluginManager, load_problems: list[PluginProblem]) -> Registries:
    regs = Registries()
    regs.problems.extend(load_problems)
    for attr, (hook_name, entry_type) in _HOOKS.items():
        registry: Registry[Any] = getattr(regs, attr)
        hook = getattr(pm.hook, hook_name)
        for impl in sorted(hook.get_hookimpls(), key=lambda i: i.plugin_name):
            name = impl.plugin_name
            try:
                result = impl.function()
            except Exception as exc:
                regs.problems.append(PluginProblem(name, f"{hook_name}() raised {type(exc).__name__}: {exc}"))
                continue
            if result is None:
                continue
            if not isinstance(result, (list, tuple)) or not all(isinstance(e, entry_type) for e in result):
                regs.problems.append(
                    PluginProblem(name, f"{hook_name}() must return a list of {entry_type.__name__}, got {result!r:.120}")
                )
                continue
            for entry in result:
                try:
                    registry.add(entry.name, entry, owner=name)
                except DuplicateNameError as exc:
                    regs.problems.append(PluginProblem(name, str(exc)))
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
