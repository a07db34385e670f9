"""The run folder: what the trainer writes there, and reading it back.

``state.pt`` (everything an exact resume needs, the previous one kept as a fallback),
``G_latest.safetensors`` / ``G_ema_latest.safetensors`` (the generator, loadable by
:func:`gradguide.load`), ``recipe.toml`` (the resolved recipe). Only rank 0 writes;
every write is atomic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from torch import nn

from ..checkpoints import save as save_model
from ..errors import CheckpointError
from .recipe import Recipe, recipe_to_toml
from .state import atomic_torch_save, clean_stale_files, load_state_with_fallback, state_exists

__all__ = ["Checkpointer", "STATE_FILE", "G_LATEST", "G_EMA_LATEST", "G_BEST", "RECIPE_FILE"]

STATE_FILE = "state.pt"
G_LATEST = "G_latest.safetensors"
G_EMA_LATEST = "G_ema_latest.safetensors"
G_BEST = "G_best.safetensors"
RECIPE_FILE = "recipe.toml"


class Checkpointer:
    """Writes and reads one run folder.

    ``last_good_iteration`` is the iteration of the last checkpoint written (or resumed
    from): what a stop says was saved.
    """

    def __init__(self, out_dir: Path, *, is_main: bool, say: Callable[[str], None]) -> None:
        self.out_dir = Path(out_dir)
        self.is_main = is_main
        self.say = say
        self.last_good_iteration: Optional[int] = None

    @property
    def state_path(self) -> Path:
        return self.out_dir / STATE_FILE

    def check_start(self, resume: bool) -> None:
        """``--resume`` needs a state; a fresh run refuses to overwrite one."""
        if resume and not state_exists(self.state_path):
            raise CheckpointError(f"--resume: no training state at {self.state_path}")
        if not resume and state_exists(self.state_path):
            raise CheckpointError(f"{self.state_path} exists: pass --resume to continue that run, or choose another --out")

    def prepare(self, recipe: Recipe) -> None:
        """Before the first step: the folder, no stale temp files, the resolved recipe."""
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            clean_stale_files(self.out_dir)  # temporary files a killed write left behind
            (self.out_dir / RECIPE_FILE).write_text(recipe_to_toml(recipe), encoding="utf-8")

    def save(self, state: dict, G: nn.Module, ema: Optional[nn.Module], *, iteration: int, recipe: Recipe) -> None:
        """``state.pt`` (the previous one kept) and the generator(s), rank 0 only."""
        if self.is_main:
            atomic_torch_save(state, self.state_path, keep_previous=True)
            meta = {"iteration": str(iteration), "recipe": recipe.name}
            save_model(G, self.out_dir / G_LATEST, metadata=meta)
            if ema is not None:
                save_model(ema, self.out_dir / G_EMA_LATEST, metadata={**meta, "ema": str(recipe.train.ema)})
        self.last_good_iteration = iteration

    def load(self, map_location: Any) -> tuple[dict, Path]:
        """The latest readable state (falling back to the previous one, saying so)."""
        return load_state_with_fallback(self.state_path, map_location=map_location, say=self.say)
