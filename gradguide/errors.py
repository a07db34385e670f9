"""Every gradguide exception, all under :class:`GradguideError`.

Messages are one line naming the file or argument at fault and the reason. Modules raise
these; none defines its own exception class.
"""
from __future__ import annotations

__all__ = [
    "GradguideError",
    "CheckpointError",
    "ImageReadError",
    "RecipeError",
    "DataError",
    "SpecError",
    "PluginError",
    "DuplicateNameError",
    "WeightsNotFoundError",
    "LPIPSWeightsMissing",
    "EvalError",
    "InferenceError",
    "DeviceError",
    "TileOOMError",
    "TrainingStopped",
    "NonFiniteError",
    "BatchStopped",
]


class GradguideError(Exception):
    """Base class. ``str(exc)`` is one line naming the file or argument and the reason."""


class CheckpointError(GradguideError, ValueError):
    """A checkpoint file cannot be read, is refused, or does not fit the model."""


class ImageReadError(GradguideError, ValueError):
    """An image file cannot be read."""


class RecipeError(GradguideError, ValueError):
    """A recipe key or value is invalid."""


class DataError(GradguideError, ValueError):
    """A dataset folder or file is missing or unusable."""


class SpecError(GradguideError, ValueError):
    """A guidance spec does not fit the model, or a model cannot be wrapped."""


class PluginError(GradguideError, ValueError):
    """A plugin's entry is invalid."""


class DuplicateNameError(PluginError):
    """A registry name is already taken (names are never silently replaced)."""


class WeightsNotFoundError(GradguideError, FileNotFoundError):
    """Pretrained weights needed by a loss are not on disk (gradguide never downloads)."""


class LPIPSWeightsMissing(GradguideError, FileNotFoundError):
    """LPIPS needs weights that are not on disk (gradguide never downloads)."""


class EvalError(GradguideError, ValueError):
    """An evaluation argument or dataset is invalid."""


class InferenceError(GradguideError, ValueError):
    """An inference argument or model output is invalid."""


class DeviceError(InferenceError):
    """A device that is not available on this machine, or not a device."""


class TileOOMError(GradguideError, RuntimeError):
    """A tile does not fit in device memory even at the smallest tile size."""


class TrainingStopped(GradguideError, RuntimeError):
    """Training stopped early (too many non-finite steps in a row)."""


class NonFiniteError(GradguideError, ValueError):
    """NaN or Inf where finite numbers are required (weights, a model's output, a recipe value)."""


class BatchStopped(GradguideError, RuntimeError):
    """A batch stopped because nothing more can be written (disk full, read-only output).

    ``results`` holds what was done before it stopped."""

    def __init__(self, message: str, results: list | None = None) -> None:
        super().__init__(message)
        self.results = list(results or [])
