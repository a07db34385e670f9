"""What the trainer reports, and where: the progress bar, console lines and TensorBoard.

Only the main process reports. Nothing here changes training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

__all__ = ["Reporter", "loss_text"]


def loss_text(terms: dict) -> str:
    """``total`` first, then every loss term in the order the objective reports them (a new
    term shows up by itself); the discriminators' mean logits and ``d_total`` are left out."""
    keys = ["total", *(k for k in terms if k not in ("total", "d_total") and not k.endswith(("_real", "_fake")))]
    return " ".join(f"{k}={terms[k]:.4g}" for k in keys if k in terms)


class Reporter:
    """Progress bar (a terminal only), console lines (every ``log.every`` iterations when
    there is no progress bar) and TensorBoard scalars (``log.tensorboard``, when installed).

    Use as a context manager around the loop: ``with reporter.run(start, total): ...``.
    """

    def __init__(self, console: Any, *, enabled: bool, progress: bool, tensorboard: bool, log_dir: Path) -> None:
        self.console = console
        self.enabled = enabled
        self.show_progress = progress and enabled and console.is_terminal
        self.tensorboard = tensorboard and enabled
        self.log_dir = log_dir
        self._writer = None
        self._progress = None
        self._task = None

    def say(self, msg: str) -> None:
        if self.enabled:
            self.console.print(msg, highlight=False, markup=False, soft_wrap=True)

    # ------------------------------------------------------------------ the loop's span
    def run(self, start: int, total: int) -> "Reporter":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._writer = self._open_writer(start)
        self._progress = Progress(
            TextColumn("[bold]train[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
            console=self.console, disable=not self.show_progress, transient=False,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, speed="", losses="")
        return self

    def __enter__(self) -> "Reporter":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._progress.__exit__(*exc)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _open_writer(self, start: int):
        if not self.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed
            return None
        return SummaryWriter(log_dir=str(self.log_dir), purge_step=start or None)

    # ------------------------------------------------------------------ events
    def step(self, iteration: int, terms: dict, speed: float) -> None:
        """After every iteration: the progress bar."""
        self._progress.update(self._task, completed=iteration, speed=f"{speed:.2f} it/s", losses=loss_text(terms))

    def log(self, iteration: int, total: int, terms: dict, lr_g: float, skipped_steps: int) -> None:
        """Every ``log.every`` iterations: TensorBoard scalars, and a line without a progress bar."""
        if not self.enabled:
            return
        if self._writer is not None:
            for k, val in terms.items():
                self._writer.add_scalar(f"loss/{k}", val, iteration)
            self._writer.add_scalar("lr/G", lr_g, iteration)
            self._writer.add_scalar("train/skipped_steps", skipped_steps, iteration)
        if not self.show_progress:
            self.say(f"it {iteration}/{total} lr {lr_g:.3g} " + " ".join(f"{k}={x:.4g}" for k, x in terms.items()))

    def validation(self, iteration: int, metrics: dict, improved: bool) -> None:
        if self._writer is not None:
            for k in ("psnr_y", "ssim_y", "psnr_rgb", "ciede2000", "bias_r", "bias_g", "bias_b"):
                if k in metrics:
                    self._writer.add_scalar(f"val/{k}", metrics[k], iteration)
        colour = ""
        if "ciede2000" in metrics:
            bias = " ".join(f"{c}{metrics[f'bias_{c.lower()}'] * 255:+.2f}" for c in "RGB")
            colour = f", PSNR-RGB {metrics['psnr_rgb']:.3f} dB, CIEDE2000 {metrics['ciede2000']:.3f}, mean error {bias} levels"
        self.say(
            f"val @ {iteration}: PSNR-Y {metrics['psnr_y']:.3f} dB, SSIM-Y {metrics['ssim_y']:.4f}{colour}"
            + (" (best)" if improved else "")
        )

    @property
    def writer(self) -> Optional[Any]:
        return self._writer
