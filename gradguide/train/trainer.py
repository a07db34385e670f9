"""The one trainer: every recipe (PSNR pre-training, ESRGAN, SPSR, ablations) runs here.

One iteration:

1. the next global batch (the sampler's position advances only when it is consumed);
2. G step: ``SPSRLoss`` (Eq. 10) with D_I/D_GM frozen, under autocast (bf16/fp16);
3. D step: RaGAN losses of D_I and D_GM on detached outputs (when their weights are on);
4. EMA of G, scheduler steps.

A non-finite loss skips the step (no optimizer updates) and is counted; after
``train.nan_patience`` in a row, training stops with :class:`TrainingStopped` and the last
good checkpoint is left as it is. During the branch warm-up (``train.warmup_iters``) only
the modules ``G.warmup_modules()`` returns have ``requires_grad``.

Distributed: G is wrapped in DDP (rebuilt when the warm-up ends, because the set of
trained parameters changes); the discriminators see two forwards per step (real, fake)
so their gradients are averaged explicitly in one flat all-reduce, and their buffers
(BatchNorm statistics) broadcast from rank 0. Only rank 0 writes files.

The loop (:meth:`Trainer.fit`) is short; small collaborators do the rest, each in its
own module: :class:`~gradguide.train.checkpointing.Checkpointer` (the run folder: state,
generator files, recipe), :class:`~gradguide.train.best.BestModel` (best validation
value and ``G_best``), :class:`~gradguide.train.reporting.Reporter` (progress bar,
console, TensorBoard), :func:`~gradguide.train.validation.validate` (PSNR-Y/SSIM-Y) and
:class:`~gradguide.train.signals.StopSignals` (SIGINT/SIGTERM at a step boundary).
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoints import save as save_model
from ..devices import resolve_device
from ..errors import CheckpointError, RecipeError, TrainingStopped
from ..types import as_output
from . import dist as gdist
from .best import BestModel
from .build import (
    Optimizers,
    build_discriminators,
    build_generator,
    build_loader,
    build_loss,
    build_optimizers,
    build_train_dataset,
    build_val_dataset,
    build_degradation,
    with_degradation_keys,
    load_pretrained,
)
from .checkpointing import G_BEST, G_EMA_LATEST, G_LATEST, RECIPE_FILE, STATE_FILE, Checkpointer
from .recipe import ModelConfig, Recipe, recipe_to_dict
from .reporting import Reporter
from .signals import StopSignals, ignore_stop_signals
from .state import STATE_VERSION, capture_rng_state, restore_rng_state
from .validation import validate as validate_model

__all__ = ["Trainer", "TrainResult", "TrainingStopped", "train", "STATE_FILE", "G_LATEST", "G_EMA_LATEST", "G_BEST", "RECIPE_FILE"]


@dataclass
class TrainResult:
    iteration: int
    out_dir: Path
    skipped_steps: int = 0
    best: Optional[dict] = None
    last_val: Optional[dict] = None
    seconds: float = 0.0
    history: list = field(default_factory=list)
    stopped: Optional[str] = None  # why training ended before train.iterations ("time limit", "SIGINT", "SIGTERM")
    start_iteration: int = 0  # where this run started (> 0 after --resume)
    saved_iteration: Optional[int] = None  # the iteration of the last checkpoint written


def ema_with_warmup(decay: float):
    """EMA update for :class:`torch.optim.swa_utils.AveragedModel` whose decay ramps up as
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the warm-up of timm's ModelEmaV3).

    A constant decay keeps ``decay**n`` of the *initial, random* weights: at 0.999 that is
    37 % after 1000 iterations and 12 % after 2000, so an EMA model validated or shipped
    early is a blend with noise -- it showed as a large global colour/intensity bias that
    fades only slowly (docs/results.md, "Validation curves"). With the warm-up the average
    follows G at first and smooths it from then on."""

    @torch.no_grad()
    def update(ema_params, params, num_averaged) -> None:
        n = int(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        floats = [(e, p) for e, p in zip(ema_params, params) if e.is_floating_point()]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [p for _, p in floats], 1.0 - d)
        for e, p in zip(ema_params, params):
            if not e.is_floating_point():
                e.copy_(p)

    return update


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _set_deterministic(on: bool, device: torch.device) -> None:
    if on:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"


class Trainer:
    """Train the generator (and discriminators) a recipe describes.

    Args:
        recipe: a validated :class:`~gradguide.train.recipe.Recipe`.
        out_dir: where ``state.pt``, ``G_latest.safetensors``, ``G_best.safetensors``,
            ``recipe.toml`` and TensorBoard logs go.
        resume: continue from ``out_dir/state.pt`` exactly.
        train_dataset / val_dataset: use these instead of building them from the recipe
            (items ``(lr, hr)``; training items must be pure functions of
            ``(seed, epoch, index)`` for an exact resume).
        callbacks: ``cb(trainer)`` called after every iteration (after any checkpoint).
        console: a :class:`rich.console.Console` for progress and messages.
    """

    def __init__(
        self,
        recipe: Recipe,
        out_dir: os.PathLike | str,
        *,
        resume: bool = False,
        train_dataset: Any = None,
        val_dataset: Any = None,
        callbacks: Sequence[Callable[["Trainer"], None]] = (),
        console: Any = None,
    ) -> None:
        from rich.console import Console

        self.recipe = recipe
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.callbacks = list(callbacks)
        self.console = console or Console(stderr=True)
        t = recipe.train
        if t.deterministic:  # must be set before the CUDA context exists
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.device = resolve_device(t.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")), what="train.device")
        self.dist = gdist.init_distributed(self.device)
        self.is_main = self.dist.is_main
        self.reporter = Reporter(
            self.console, enabled=self.is_main, progress=recipe.log.progress, tensorboard=recipe.log.tensorboard,
            log_dir=self.out_dir / "tb",
        )
        self.checkpoints = Checkpointer(self.out_dir, is_main=self.is_main, say=self._say)
        self.best_model = BestModel(recipe.val.metric, recipe.val.mode, self.out_dir / G_BEST, save_model, source=recipe.source)
        self._prev_deterministic = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
        _set_deterministic(t.deterministic, self.device)
        self.checkpoints.check_start(resume)
        # data first: a missing or empty folder fails before any model is built
        ds = with_degradation_keys(recipe, train_dataset) if train_dataset is not None else build_train_dataset(recipe)
        self.sampler, self.loader = build_loader(
            recipe, ds, rank=self.dist.rank, world_size=self.dist.world_size, pin_memory=self.device.type == "cuda",
            worker_init_fn=ignore_stop_signals,
        )
        self.val_dataset = val_dataset if val_dataset is not None else (build_val_dataset(recipe) if recipe.val.every else None)
        _seed_everything(t.seed)

        # models and objective
        self.G = build_generator(recipe)
        self.D_I, self.D_GM = build_discriminators(recipe)
        self.loss = build_loss(recipe)
        self.degradation = build_degradation(recipe)  # [degradation]: the LR is made from the HR on the device
        if self.loss.needs_ema and t.ema <= 0:
            raise RecipeError(f"{recipe.source}: loss.terms: a term compares G with its EMA copy; set train.ema > 0")
        if recipe.model.pretrained and not resume:
            report = load_pretrained(self.G, recipe.model.pretrained, strict=recipe.model.pretrained_strict)
            self._say(f"pretrained {recipe.model.pretrained}: {report.summary()}")
        if t.warmup_iters and not hasattr(self.G, "warmup_modules"):
            raise RecipeError(f"{recipe.source}: train.warmup_iters needs a generator with warmup_modules() (a GuidedSR)")
        mf = torch.channels_last if t.channels_last else torch.contiguous_format
        for m in (self.G, self.D_I, self.D_GM, self.loss):
            if m is not None:
                m.to(device=self.device, memory_format=mf)
        self.G.train()
        for d in (self.D_I, self.D_GM):
            if d is not None:
                d.train()
        self.ema = None
        if t.ema > 0:
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(self.G, multi_avg_fn=ema_with_warmup(t.ema), use_buffers=True)
            self.ema.eval()
        self.opt: Optimizers = build_optimizers(recipe, self.G, self.D_I, self.D_GM)
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.amp == "fp16")


        # progress counters (restored on resume)
        self.iteration = 0
        self.skipped_steps = 0
        self.bad_streak = 0
        self.last_val: Optional[dict] = None
        self.history: list = []
        if resume:
            self._load_state()
        self._phase: Optional[bool] = None
        self.G_train: nn.Module = self.G

    # ------------------------------------------------------------------ helpers
    def _say(self, msg: str) -> None:
        self.reporter.say(msg)

    @property
    def best(self) -> Optional[dict]:
        """The best validation value so far (``{"metric", "value", "iteration"}``)."""
        return self.best_model.best

    @property
    def last_good_iteration(self) -> Optional[int]:
        """The iteration of the last checkpoint written or resumed from."""
        return self.checkpoints.last_good_iteration

    @property
    def in_warmup(self) -> bool:
        return self.iteration < self.recipe.train.warmup_iters

    def _set_phase(self, warm: bool) -> None:
        """Freeze everything but the warm-up modules (by module, not by name) during the
        warm-up; (re)build the DDP/compile wrapper around G for the trainable set."""
        if self._phase is warm:
            return
        if warm:
            self.G.requires_grad_(False)
            for m in self.G.warmup_modules():
                m.requires_grad_(True)
        else:
            self.G.requires_grad_(True)
        if self.G_train is not self.G:  # drop the old wrapper (and its DDP autograd hooks) first
            self.G_train = self.G
            import gc

            gc.collect()
        model: nn.Module = self.G
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None, broadcast_buffers=False)
        if self.recipe.train.compile:
            model = torch.compile(model)
        self.G_train = model
        self._phase = warm

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        mf = torch.channels_last if self.recipe.train.channels_last else torch.contiguous_format
        return x.to(self.device, non_blocking=True).contiguous(memory_format=mf)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "format": "gradguide-train-state",
            "version": STATE_VERSION,
            "iteration": self.iteration,
            "recipe": recipe_to_dict(self.recipe),
            "G": self.G.state_dict(),
            "D_I": self.D_I.state_dict() if self.D_I is not None else None,
            "D_GM": self.D_GM.state_dict() if self.D_GM is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            **self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": capture_rng_state(),
            "skipped_steps": self.skipped_steps,
            "best": dict(self.best) if self.best else None,
            "world_size": self.dist.world_size,
            "history": list(self.history),
        }

    def _load_state(self) -> None:
        state, path = self.checkpoints.load(map_location=self.device)
        try:  # compared as resolved configurations: a run saved with the old model keys resumes
            saved_model = ModelConfig.from_table(state["recipe"].get("model", {}), str(path)).resolved()
        except RecipeError:
            saved_model = {}
        now_model = self.recipe.model.resolved()
        diff = [k for k in now_model if saved_model.get(k) != now_model[k]]
        if diff:
            raise CheckpointError(f"{path}: the recipe's model differs from the saved run ({', '.join('model.' + k for k in diff)})")
        try:
            self.G.load_state_dict(state["G"])
            for name, d in (("D_I", self.D_I), ("D_GM", self.D_GM)):
                if (d is None) != (state[name] is None):
                    raise ValueError(f"{name} is {'absent' if d is None else 'present'} now but was not when saved")
                if d is not None:
                    d.load_state_dict(state[name])
            if self.ema is not None and state["ema"] is not None:
                self.ema.load_state_dict(state["ema"])
            elif self.ema is not None:
                self.ema.module.load_state_dict(self.G.state_dict())
            self.opt.load_state_dict(state)
            self.scaler.load_state_dict(state["scaler"])
            self.sampler.load_state_dict(state["sampler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: cannot resume: {str(exc).splitlines()[0]}") from None
        self.iteration = int(state["iteration"])
        self.skipped_steps = int(state["skipped_steps"])
        self.best_model.best = state["best"]
        self.history = list(state.get("history") or [])
        self.checkpoints.last_good_iteration = self.iteration
        rng = state["rng"]
        per_rank = state.get("rng_ranks")
        if per_rank and len(per_rank) == self.dist.world_size:
            rng = per_rank[self.dist.rank]
        restore_rng_state(rng)
        self._say(f"resumed from {path} at iteration {self.iteration}")

    def save_checkpoint(self) -> None:
        """Write ``state.pt`` and ``G_latest.safetensors`` (rank 0), atomically."""
        rng_ranks = None
        if self.dist.enabled:
            import torch.distributed as dist

            rng_ranks = [None] * self.dist.world_size
            dist.all_gather_object(rng_ranks, capture_rng_state())
        state = self.state_dict() if self.is_main else {}
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        ema = self.ema.module if self.ema is not None else None
        self.checkpoints.save(state, self.G, ema, iteration=self.iteration, recipe=self.recipe)
        gdist.barrier(self.dist)

    # ------------------------------------------------------------------ validation
    def eval_model(self) -> nn.Module:
        """The model validated and saved as best: the EMA of G when enabled."""
        return self.ema.module if self.ema is not None else self.G

    def validate(self) -> Optional[dict]:
        """Y-channel PSNR/SSIM (border crop = scale) over the validation set (rank 0), and
        the colour figures of :func:`~gradguide.train.validation.validate` with ``val.colour``."""
        if self.val_dataset is None:
            return None
        metrics = validate_model(
            self.eval_model(), self.val_dataset, scale=self.recipe.model.scale, max_images=self.recipe.val.max_images,
            to_device=self._to_device, autocast=self._autocast, colour=self.recipe.val.colour,
        )
        return {**metrics, "iteration": self.iteration}

    # ------------------------------------------------------------------ one step
    def train_step(self, lr: torch.Tensor, hr: torch.Tensor, keys: Optional[torch.Tensor] = None) -> tuple[bool, dict]:
        """One G step and one D step. Returns ``(ok, terms)``; ``ok`` is False when a
        non-finite loss skipped the step (on every process)."""
        if self.degradation is not None:  # Real-ESRGAN's pipeline on the batch, seeded by the items' keys
            if keys is None:
                raise ValueError("train_step: degradation is enabled, so the batch's degradation keys are needed")
            lr, hr = self.degradation(hr.to(self.device, non_blocking=True), keys)
        lr, hr = self._to_device(lr), self._to_device(hr)
        Ds = [d for d in (self.D_I, self.D_GM) if d is not None]
        for d in Ds:
            d.requires_grad_(False)
        with self._autocast():
            out = as_output(self.G_train(lr))
            ema_sr = None
            if self.ema is not None and self.loss.needs_ema:  # e.g. LDL: the EMA copy's output, no autograd
                with torch.no_grad():
                    ema_sr = as_output(self.ema.module(lr)).sr
            keep_real = bool(Ds) and self.recipe.train.d_updates and self.recipe.train.reuse_real_logits
            gl = self.loss(out, hr, self.D_I, self.D_GM, ema_sr=ema_sr, keep_real=keep_real)
        terms = dict(gl.terms)
        bad = gdist.any_true(not math.isfinite(terms["total"]), self.dist, self.device)
        self.opt.g.zero_grad(set_to_none=True)
        if bad:
            return False, terms
        self.scaler.scale(gl.total).backward()
        self.scaler.step(self.opt.g)

        d_ok = True
        if Ds and self.recipe.train.d_updates:
            for d in Ds:
                d.requires_grad_(True)
            with self._autocast():
                dl = self.loss.discriminator_loss(out, hr, self.D_I, self.D_GM, sr_grad=gl.sr_grad, hr_grad=gl.hr_grad,
                                                  real_logits=gl.real_logits, real_grad_logits=gl.real_grad_logits)
            terms.update({("d_total" if k == "total" else k): x for k, x in dl.terms.items()})
            for o in (self.opt.d_i, self.opt.d_gm):
                if o is not None:
                    o.zero_grad(set_to_none=True)
            d_bad = gdist.any_true(not math.isfinite(dl.terms["total"]), self.dist, self.device)
            if d_bad:
                d_ok = False
            else:
                self.scaler.scale(dl.total).backward()
                for d, o in ((self.D_I, self.opt.d_i), (self.D_GM, self.opt.d_gm)):
                    if d is not None:
                        gdist.all_reduce_grads(d.parameters(), self.dist)
                        self.scaler.step(o)
                        gdist.broadcast_buffers(d, self.dist)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.G)
        return d_ok, terms

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Run to ``train.iterations`` (or a stop: time limit, SIGINT/SIGTERM, too many
        non-finite steps); returns a :class:`TrainResult`."""
        t = self.recipe.train
        self.checkpoints.prepare(self.recipe)
        gdist.barrier(self.dist)
        start_it = self.iteration
        t0 = time.perf_counter()
        data = iter(self.loader)
        stopped: Optional[str] = None
        signals = StopSignals()
        with self.reporter.run(self.iteration, t.iterations), signals:
            while self.iteration < t.iterations:
                self._set_phase(self.in_warmup)
                batch = next(data)  # (lr, hr) or, with [degradation], (lr, hr, keys)
                ok, terms = self.train_step(*batch[: 3 if self.degradation is not None else 2])
                self.sampler.advance()
                self.opt.step_schedulers()
                self.iteration += 1
                self._count(ok)
                self.reporter.step(self.iteration, terms, (self.iteration - start_it) / max(time.perf_counter() - t0, 1e-9))
                self._after_step(terms)
                stopped = self._stop_reason(signals, t0)
                if stopped:
                    break
        return TrainResult(
            iteration=self.iteration,
            out_dir=self.out_dir,
            skipped_steps=self.skipped_steps,
            best=self.best,
            last_val=self.last_val,
            seconds=time.perf_counter() - t0,
            history=list(self.history),
            stopped=stopped,
            start_iteration=start_it,
            saved_iteration=self.last_good_iteration,
        )

    def _count(self, ok: bool) -> None:
        """Count a skipped (non-finite) step; too many in a row stop training."""
        t = self.recipe.train
        if ok:
            self.bad_streak = 0
            return
        self.skipped_steps += 1
        self.bad_streak += 1
        self._say(f"iteration {self.iteration}: non-finite loss, step skipped ({self.bad_streak} in a row)")
        if self.bad_streak >= t.nan_patience:
            last = self.last_good_iteration
            where = f"{self.out_dir / STATE_FILE} (iteration {last})" if last is not None else "none was written"
            raise TrainingStopped(
                f"training stopped at iteration {self.iteration}: {self.bad_streak} non-finite steps in a row "
                f"(train.nan_patience={t.nan_patience}); last good checkpoint: {where}"
            )

    def _after_step(self, terms: dict) -> None:
        """Logging, validation, checkpoint and callbacks, each on its own schedule."""
        t, v, it = self.recipe.train, self.recipe.val, self.iteration
        last = it == t.iterations
        if it % self.recipe.log.every == 0 or last:
            self.reporter.log(it, t.iterations, terms, self.opt.g.param_groups[0]["lr"], self.skipped_steps)
        if v.every and (it % v.every == 0 or last):
            self._run_validation()
        if self.bad_streak == 0 and (it % t.checkpoint_every == 0 or last):
            self.save_checkpoint()
        for cb in self.callbacks:
            cb(self)

    def _stop_reason(self, signals: "StopSignals", t0: float) -> Optional[str]:
        """SIGINT/SIGTERM or the time limit: a checkpoint at this step boundary, then the
        reason to stop (``None``: go on)."""
        t = self.recipe.train
        if self.iteration >= t.iterations:
            return None
        reason = None
        if gdist.any_true(signals.received is not None, self.dist, self.device):
            reason = signals.received or "SIGTERM"
        elif t.time_limit_s and gdist.any_true(time.perf_counter() - t0 > t.time_limit_s, self.dist, self.device):
            reason = "time limit"
        if reason is None:
            return None
        if self.bad_streak == 0 and self.last_good_iteration != self.iteration:
            self.save_checkpoint()
        if reason == "time limit":
            self._say(f"time limit ({t.time_limit_s:g} s) reached at iteration {self.iteration}; --resume continues")
        return reason

    def _run_validation(self) -> None:
        if self.is_main:
            metrics = self.validate()
            if metrics is not None:
                self.last_val = metrics
                improved = self.best_model.update(metrics, self.iteration, self.eval_model())
                self.history.append({k: float(x) for k, x in metrics.items()})
                self.reporter.validation(self.iteration, metrics, improved)
        gdist.barrier(self.dist)

    def close(self) -> None:
        """Leave the process group and restore the global determinism settings."""
        gdist.destroy(self.dist)
        det, bench, cudnn_det = self._prev_deterministic
        torch.use_deterministic_algorithms(det)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = bench, cudnn_det


def train(recipe: Recipe, out_dir: os.PathLike | str, *, resume: bool = False, **kw) -> TrainResult:
    """Build a :class:`Trainer` and run it to ``train.iterations``."""
    trainer = Trainer(recipe, out_dir, resume=resume, **kw)
    try:
        return trainer.fit()
    finally:
        trainer.close()
