"""Best-model tracking: the best validation value so far, and ``G_best.safetensors``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from torch import nn

from ..errors import RecipeError

__all__ = ["BestModel"]


class BestModel:
    """Keeps the best value of ``metric`` (``mode`` ``"max"`` or ``"min"``) and writes the
    model that reached it with ``save(model, path, metadata=...)`` (rank 0 only).

    ``best`` is ``{"metric", "value", "iteration"}`` or ``None``; it is part of the
    training state (restored on resume).
    """

    def __init__(self, metric: str, mode: str, path: Path, save: Callable, *, source: str = "recipe") -> None:
        self.metric, self.mode, self.path, self._save, self.source = metric, mode, Path(path), save, source
        self.best: Optional[dict] = None

    def update(self, metrics: dict, iteration: int, model: nn.Module) -> bool:
        """Record ``metrics``; save ``model`` and return True when it is the best so far."""
        if self.metric not in metrics:
            have = ", ".join(k for k in metrics if k not in ("images", "iteration"))
            raise RecipeError(f"{self.source}: val.metric {self.metric!r} is not computed (have: {have})")
        value = metrics[self.metric]
        better = self.best is None or (value > self.best["value"] if self.mode == "max" else value < self.best["value"])
        if better:
            self.best = {"metric": self.metric, "value": value, "iteration": iteration}
            self._save(model, self.path, metadata={"iteration": str(iteration), self.metric: f"{value:.6f}"})
        return better
