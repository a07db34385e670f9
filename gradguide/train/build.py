"""Recipe -> generator, discriminators, objective, optimizers, schedulers and data.

Every builder takes the typed :class:`~gradguide.train.recipe.Recipe` and returns
ready objects on the CPU (the trainer moves them); nothing here picks a device.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import DataError, RecipeError
from ..plugins import registries
from ..wrap import wrap
from .recipe import Recipe
from .sampler import EpochIndexed, ResumableBatchSampler

__all__ = [
    "build_generator",
    "load_pretrained",
    "build_discriminators",
    "build_loss",
    "build_optimizers",
    "build_train_dataset",
    "build_loader",
    "build_val_dataset",
    "build_degradation",
    "with_degradation_keys",
    "Optimizers",
]


def build_generator(recipe: Recipe) -> nn.Module:
    """The generator the recipe asks for: ``model.backbone`` built with ``backbone_config``
    (``model.scale`` passed as the factory's own scale argument), guided as
    ``model.guidance`` says. Where a registered architecture is the named form of that
    pair (``spsr`` = ``rrdbnet`` + ``paper``), it is built instead, so checkpoints record
    it. A scale the backbone cannot do raises :class:`RecipeError` naming ``model.scale``."""
    m = recipe.model
    archs = registries().architectures
    entry = archs.get(m.backbone)
    if m.guidance != "none":
        named = [e for _, e in archs.items() if e.guided_from == (m.backbone, m.guidance)]
        entry = named[0] if named else entry
    kwargs = dict(m.backbone_config)
    params = inspect.signature(entry.factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        raise RecipeError(
            f"{recipe.source}: model.backbone_config has {', '.join(map(repr, unknown))}, which backbone "
            f"{m.backbone!r} does not take (it takes: {', '.join(params)})"
        )
    try:
        G = entry.build(kwargs, scale=m.scale)
        if m.guidance != "none" and entry.is_backbone:
            G = wrap(G, fusion=m.guidance, edge_pad=m.edge_pad)
        elif m.edge_pad:
            raise RecipeError(f"{recipe.source}: model.edge_pad: the generator {m.backbone!r} + {m.guidance!r} is a named "
                              "architecture, not a gradguide.wrap model; edge_pad needs one of those")
    except ValueError as exc:
        if isinstance(exc, RecipeError):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        key = "model.scale" if "scale" in msg else "model"
        raise RecipeError(f"{recipe.source}: {key}={m.scale if key == 'model.scale' else m.backbone}: {msg}") from None
    if int(getattr(G, "scale", m.scale)) != m.scale:
        raise RecipeError(f"{recipe.source}: model.scale={m.scale} but the built generator has scale {G.scale}")
    return G


def load_pretrained(G: nn.Module, path: str, *, strict: bool = False):
    """Initialise ``G`` from a checkpoint (any layout :func:`gradguide.load` reads).

    A checkpoint of the same architecture as ``G`` fills all of it; any other (e.g. a
    PSNR-oriented RRDBNet for SPSR) fills ``G.backbone``. Returns the
    :class:`gradguide.checkpoints.LoadReport` listing missing/unexpected keys.
    """
    from ..checkpoints import architecture_of, convert_checkpoint, load_checkpoint, read_state_dict

    sd, meta, _ = read_state_dict(path)
    _, arch, _, _, _ = convert_checkpoint(sd, meta, getattr(G, "scale", None))
    target = G
    if arch != architecture_of(G)[0] and hasattr(G, "backbone"):
        target = G.backbone
    was_training = G.training
    report = load_checkpoint(path, model=target, strict=strict, scale=getattr(G, "scale", None)).report
    G.train(was_training)
    return report


def _image_channels(recipe: Recipe) -> int:
    """The generator's output channels (the backbone's ``out_nc`` where it has one, else 3)."""
    try:
        return int(recipe.model.backbone_arg("out_nc"))
    except AttributeError:
        return 3


def build_discriminators(recipe: Recipe) -> tuple[Optional[nn.Module], Optional[nn.Module]]:
    """``(D_I, D_GM)``; one whose adversarial weight is 0 is ``None``."""
    from ..discriminators import create_discriminator

    loss = recipe.loss
    crop = recipe.data.crop
    grad_size = crop + (2 if loss.gradient_padding == "official_loss" else 0)

    def make(name: str, size: int, key: str) -> nn.Module:
        kwargs: dict = {"in_channels": _image_channels(recipe), "nf": loss.discriminator_nf}
        try:
            factory = registries().discriminators.get(name).factory
        except KeyError as exc:
            raise RecipeError(f"{recipe.source}: {key}: {exc.args[0]}") from None
        if "input_size" in inspect.signature(factory).parameters:
            kwargs["input_size"] = size
        try:
            return create_discriminator(name, **kwargs)
        except ValueError as exc:
            raise RecipeError(f"{recipe.source}: {key}={name!r}: {exc}") from None

    d_i = make(loss.discriminator, crop, "loss.discriminator") if loss.gan > 0 else None
    d_gm = make(loss.gradient_discriminator, grad_size, "loss.gradient_discriminator") if loss.gradient_gan > 0 else None
    return d_i, d_gm


def build_loss(recipe: Recipe):
    """:class:`gradguide.losses.SPSRLoss` from the recipe's ``[loss]`` (its own keyword
    arguments; an empty ``vgg_weights`` is the torch hub cache). With
    ``loss.on_missing_vgg = "drop"`` missing VGG19 weights give a warning and no L_Per."""
    from ..losses import SPSRLoss
    from .recipe import SPSR_LOSS_KEYS

    kwargs = {k: getattr(recipe.loss, k) for k in SPSR_LOSS_KEYS}
    kwargs["vgg_weights"] = kwargs["vgg_weights"] or None
    return SPSRLoss(**kwargs)


@dataclass
class Optimizers:
    """Adam + MultiStepLR for G and each discriminator that exists."""

    g: torch.optim.Optimizer
    g_sched: torch.optim.lr_scheduler.LRScheduler
    d_i: Optional[torch.optim.Optimizer] = None
    d_i_sched: Optional[torch.optim.lr_scheduler.LRScheduler] = None
    d_gm: Optional[torch.optim.Optimizer] = None
    d_gm_sched: Optional[torch.optim.lr_scheduler.LRScheduler] = None

    def named(self) -> dict:
        return {k: v for k, v in (("G", self.g), ("D_I", self.d_i), ("D_GM", self.d_gm)) if v is not None}

    def schedulers(self) -> dict:
        return {k: v for k, v in (("G", self.g_sched), ("D_I", self.d_i_sched), ("D_GM", self.d_gm_sched)) if v is not None}

    def state_dict(self) -> dict:
        return {
            "optimizers": {k: o.state_dict() for k, o in self.named().items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        opts, scheds = self.named(), self.schedulers()
        if set(state["optimizers"]) != set(opts):
            raise ValueError(f"optimizers in the state ({sorted(state['optimizers'])}) differ from the recipe's ({sorted(opts)})")
        for k, o in opts.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in scheds.items():
            s.load_state_dict(state["schedulers"][k])

    def step_schedulers(self) -> None:
        for s in self.schedulers().values():
            s.step()


def build_optimizers(recipe: Recipe, G: nn.Module, d_i: Optional[nn.Module], d_gm: Optional[nn.Module]) -> Optimizers:
    """Adam(lr, betas, eps; torch's fused kernel with ``optim.fused``) for G (all its parameters: the warm-up freezes by
    ``requires_grad``, and Adam skips parameters without gradients) and for D_I, D_GM;
    MultiStepLR(milestones, gamma) for each."""
    o = recipe.optim
    betas = (float(o.betas[0]), float(o.betas[1]))

    def adam(params, lr, wd):
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=o.eps, weight_decay=wd, fused=True if o.fused else None)

    def sched(opt):
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(o.milestones), gamma=o.gamma)

    g = adam(G.parameters(), o.lr_g, o.weight_decay_g)
    out = Optimizers(g, sched(g))
    if d_i is not None:
        out.d_i = adam(d_i.parameters(), o.lr_d, o.weight_decay_d)
        out.d_i_sched = sched(out.d_i)
    if d_gm is not None:
        out.d_gm = adam(d_gm.parameters(), o.lr_d, o.weight_decay_d)
        out.d_gm_sched = sched(out.d_gm)
    return out


def build_loader(recipe: Recipe, dataset, *, rank: int = 0, world_size: int = 1, pin_memory: bool = False, worker_init_fn=None):
    """``(sampler, loader)`` over ``dataset``: a :class:`ResumableBatchSampler` (its
    position is part of the training state) and a DataLoader that never touches the global
    RNG. Items are pure functions of ``(seed, epoch, index)``, so the worker count never
    changes the data; more workers than usable CPUs only add processes."""
    if len(dataset) == 0:
        raise DataError(f"{recipe.data.hr or 'training data'}: the training dataset is empty")
    try:
        sampler = ResumableBatchSampler(len(dataset), recipe.train.batch_size, seed=recipe.data.seed, rank=rank, world_size=world_size)
    except ValueError as exc:
        raise DataError(f"{recipe.data.hr or 'training data'}: {exc}") from None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(recipe.data.workers, cpus)
    loader = torch.utils.data.DataLoader(
        EpochIndexed(dataset),
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(recipe.data.seed),  # never touch the global RNG
        persistent_workers=workers > 0,
        worker_init_fn=worker_init_fn if workers > 0 else None,
    )
    return sampler, loader


def build_train_dataset(recipe: Recipe):
    """The training dataset: HR folder (LR by MATLAB bicubic), paired folders, or the
    scikit-image photos (``data.source = "skimage"``). With ``degradation.enabled`` its
    items also carry their degradation key (:func:`with_degradation_keys`)."""
    from ..data import datasets as ds

    d, scale = recipe.data, recipe.model.scale
    if d.source == "skimage":
        out = ds.skimage_dataset("train", scale, crop=d.crop, augment=d.augment, seed=d.seed)
    elif not d.hr:
        raise DataError(f"{recipe.source}: no training data: pass --data-hr DIR (or set data.hr)")
    elif d.lr:
        out = ds.PairedFolderDataset(d.lr, d.hr, scale, crop=d.crop, augment=d.augment, seed=d.seed, cache=d.cache,
                                     border=d.border_crops)
    else:
        out = ds.HRFolderDataset(d.hr, scale, crop=d.crop, augment=d.augment, seed=d.seed, cache=d.cache, border=d.border_crops,
                                 lr_from=d.lr_from)
    return with_degradation_keys(recipe, out)


def with_degradation_keys(recipe: Recipe, dataset):
    """With ``degradation.enabled``: ``dataset`` wrapped in
    :class:`~gradguide.data.degrade.KeyedItems` (items ``(lr, hr, key)``, key from
    ``(data.seed, epoch, index)``), so the trainer makes the LR on the device; else as is."""
    if not recipe.degradation.enabled:
        return dataset
    from ..data.degrade import KeyedItems

    return KeyedItems(dataset, seed=recipe.data.seed)


def build_degradation(recipe: Recipe):
    """The on-device :class:`~gradguide.data.degrade.Degradation` (``[degradation]``), or
    ``None`` when ``degradation.enabled`` is off."""
    if not recipe.degradation.enabled:
        return None
    from ..data.degrade import Degradation

    return Degradation(recipe.degradation, recipe.model.scale)


def build_val_dataset(recipe: Recipe):
    """The validation dataset (whole images), or ``None`` when none is configured."""
    from ..data import datasets as ds

    d, scale = recipe.data, recipe.model.scale
    if d.source == "skimage" and not d.val_hr:
        return ds.skimage_dataset("val", scale)
    if not d.val_hr:
        return None
    return ds.ValidationDataset(d.val_hr, scale, lr_root=d.val_lr or None)
