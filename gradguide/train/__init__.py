"""gradguide.train: typed TOML recipes and the one trainer (see docs/training.md).

Imports are lazy so that ``import gradguide.train`` stays cheap.
"""
from __future__ import annotations

__all__ = [
    "Recipe",
    "load_recipe",
    "resolve_recipe",
    "apply_overrides",
    "list_recipes",
    "Trainer",
    "TrainResult",
    "TrainingStopped",
    "train",
]

_RECIPE = {"Recipe", "load_recipe", "resolve_recipe", "apply_overrides", "list_recipes"}
_TRAINER = {"Trainer", "TrainResult", "TrainingStopped", "train"}


def __getattr__(name: str):
    if name in _RECIPE:
        from . import recipe

        return getattr(recipe, name)
    if name in _TRAINER:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'gradguide.train' has no attribute {name!r}")
