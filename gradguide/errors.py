"""Exceptions with one-line messages that name the file or argument at fault."""
from __future__ import annotations

__all__ = ["GradguideError", "CheckpointError", "ImageReadError", "RecipeError", "DataError", "SpecError"]


class GradguideError(Exception):
    """Base class. ``str(exc)`` is one line naming the file or argument and the reason."""


class CheckpointError(GradguideError, ValueError):
    pass


class ImageReadError(GradguideError, ValueError):
    pass


class RecipeError(GradguideError, ValueError):
    pass


class DataError(GradguideError, ValueError):
    pass


class SpecError(GradguideError, ValueError):
    pass
