"""Training recipes: typed dataclasses loaded from TOML.

A recipe is a TOML file with the tables ``[model]``, ``[data]``, ``[train]``,
``[optim]``, ``[loss]``, ``[val]`` and ``[log]``. Each table maps onto one of the
dataclasses below; an unknown key or table is a :class:`~gradguide.errors.RecipeError`
naming the key and the file, with the closest valid key as a suggestion. Values are
type-checked (an ``int`` field refuses ``"8"`` in TOML; ``--set`` strings are coerced).

Command-line overrides use dotted paths: ``--set train.batch_size=8``,
``--set optim.milestones=[10,20]``, ``--set loss.perceptual=0``.

TOML is parsed with the standard library's :mod:`tomllib` (Python 3.11+), falling back
to the ``tomli`` backport on 3.10.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import inspect
import math
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

from ..data.degrade import DegradationConfig
from ..errors import RecipeError
from ..losses import SPSRLoss
from ..nn.fusion import FUSIONS
from ..plugins import registries
from ..registry import RecipeEntry

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

__all__ = [
    "Recipe",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "OptimConfig",
    "LossConfig",
    "ValConfig",
    "LogConfig",
    "load_recipe",
    "recipe_from_dict",
    "apply_overrides",
    "resolve_recipe",
    "list_recipes",
    "recipe_to_dict",
    "recipe_to_toml",
    "builtin_recipes",
]

#: ``model.guidance``: a fusion kind (:data:`gradguide.nn.fusion.FUSIONS`) or ``"none"``
Guidance = Literal[(*FUSIONS, "none")]  # type: ignore[valid-type]
#: ``train.amp``
AmpMode = Literal["none", "bf16", "fp16"]
#: ``data.source``
DataSource = Literal["folder", "skimage"]
LRFrom = Literal["image", "crop"]  # gradguide.data.transforms.LR_FROM
#: ``val.metric`` / ``val.mode``
ValMetric = Literal["psnr_y", "ssim_y"]
MetricMode = Literal["max", "min"]


@dataclass
class ModelConfig:
    """The generator: a registered backbone (``gradguide backbones``) and its guidance.

    ``guidance``: ``"paper"`` (SPSR's HR fusion; with ``backbone = "rrdbnet"`` this is the
    paper-exact SPSR generator, :func:`gradguide.spsr.create_spsr`), ``"lr"`` (the
    efficient LR fusion) or ``"none"`` (the plain backbone, no gradient branch).
    ``backbone_config`` holds the factory's keyword arguments; ``scale`` is passed as the
    factory's own scale argument (``scale`` or ``upscale``). ``pretrained`` is a
    checkpoint whose weights initialise the SR backbone (missing/unexpected keys are
    reported).

    The keys before the one architecture registry (``arch``, ``fusion``, ``nf``, ``nb``,
    ``gc``, ``in_nc``, ``out_nc``) are still read, with a warning naming the new key
    (:data:`DEPRECATED_MODEL_KEYS`); ``arch`` and ``nf``... remain readable as properties.
    """

    backbone: str = "rrdbnet"  # registry name
    guidance: Guidance = "paper"
    scale: int = 4
    backbone_config: dict = field(default_factory=dict)  # keyword arguments of that backbone's factory
    pretrained: str = ""  # path of a PSNR-oriented checkpoint loaded into the backbone
    pretrained_strict: bool = False  # refuse missing/unexpected keys instead of reporting them
    edge_pad: int = 0  # LR px of mirror padding around the input, cropped off the outputs (wrap(edge_pad=)); 0 = none

    @property
    def arch(self) -> str:
        """The pre-registry name of this generator: ``"spsr"``, ``"rrdbnet"`` or ``"wrap"``."""
        if self.backbone == "rrdbnet" and self.guidance in ("paper", "none"):
            return "spsr" if self.guidance == "paper" else "rrdbnet"
        return "wrap"

    @property
    def fusion(self) -> str:
        return self.guidance

    def backbone_arg(self, name: str) -> Any:
        """``backbone_config[name]``, else the backbone factory's default."""
        if name in self.backbone_config:
            return self.backbone_config[name]
        archs = registries().architectures
        if self.backbone in archs:
            p = inspect.signature(archs.get(self.backbone).factory).parameters.get(name)
            if p is not None and p.default is not inspect.Parameter.empty:
                return p.default
        raise AttributeError(f"backbone {self.backbone!r} has no argument {name!r}")

    def resolved(self) -> dict:
        """What the generator is, independent of how the recipe spells it: backbone,
        guidance, scale and the factory's full keyword arguments (its defaults filled in)."""
        cfg = dict(self.backbone_config)
        archs = registries().architectures
        if self.backbone in archs:
            for name, p in inspect.signature(archs.get(self.backbone).factory).parameters.items():
                if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD:
                    cfg.setdefault(name, p.default)
            scale_arg = archs.get(self.backbone).scale_arg
            if scale_arg:
                cfg[scale_arg] = self.scale
        return {"backbone": self.backbone, "guidance": self.guidance, "scale": self.scale, "backbone_config": cfg}

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str = "<saved>") -> "ModelConfig":
        """A ``[model]`` table as saved with a run, old keys mapped without warnings."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return recipe_from_dict({"model": dict(table)}, where).model

    nf = property(lambda self: self.backbone_arg("nf"))
    nb = property(lambda self: self.backbone_arg("nb"))
    gc = property(lambda self: self.backbone_arg("gc"))
    in_nc = property(lambda self: self.backbone_arg("in_nc"))
    out_nc = property(lambda self: self.backbone_arg("out_nc"))


#: pre-registry ``[model]`` keys: each maps onto ``backbone``/``guidance``/``backbone_config``
DEPRECATED_MODEL_KEYS = {
    "arch": "model.backbone + model.guidance",
    "fusion": "model.guidance",
    **{k: f"model.backbone_config.{k}" for k in ("nf", "nb", "gc", "in_nc", "out_nc")},
}


def _migrate_model(table: Mapping[str, Any], where: str) -> dict:
    """A ``[model]`` table with the deprecated keys mapped onto the new ones (warning once
    per key): ``arch = "spsr"`` -> ``rrdbnet`` + ``paper``, ``"rrdbnet"`` -> ``rrdbnet`` +
    ``none``, ``"wrap"`` -> ``guidance = fusion``; ``nf``... -> ``backbone_config``."""
    old = [k for k in table if k in DEPRECATED_MODEL_KEYS]
    if not old:
        return dict(table)
    out = {k: v for k, v in table.items() if k not in DEPRECATED_MODEL_KEYS}
    for k in old:
        warnings.warn(f"{where}: model.{k} is deprecated; use {DEPRECATED_MODEL_KEYS[k]}", FutureWarning, stacklevel=3)
    arch = table.get("arch")
    if arch is not None and arch not in ("spsr", "rrdbnet", "wrap"):
        raise RecipeError(f"{where}: model.arch is deprecated (use model.backbone and model.guidance); got {arch!r}")
    if arch in ("spsr", "rrdbnet"):
        out["backbone"] = "rrdbnet"
        out["guidance"] = "paper" if arch == "spsr" else "none"
    elif "fusion" in table:
        out["guidance"] = table["fusion"]
    sizes = {k: table[k] for k in ("nf", "nb", "gc", "in_nc", "out_nc") if k in table}
    if sizes:
        out["backbone_config"] = {**dict(out.get("backbone_config") or {}), **sizes}
    return out


@dataclass
class DataConfig:
    """Training and validation data. Paths are empty in shipped recipes: they come from the
    command line (``--data-hr``, ``--data-lr``, ``--val-hr``, ``--val-lr``)."""

    source: DataSource = "folder"  # scikit-image's bundled photos with "skimage" (for the demo)
    hr: str = ""
    lr: str = ""  # optional: paired LR folder; empty = bicubic (MATLAB imresize) from HR
    val_hr: str = ""
    val_lr: str = ""
    crop: int = 128  # HR crop size; the LR patch is crop // scale
    augment: bool = True
    workers: int = 0
    seed: int = 0
    cache: bool = False  # keep decoded training images in memory (per worker): bench/loader.py
    border_crops: float = 0.0  # per axis, the chance a crop lies against an image edge (0: uniform crops)
    lr_from: LRFrom = "image"  # "crop": each LR patch is its HR patch downscaled alone (every patch edge an image border)


@dataclass
class TrainConfig:
    iterations: int = 500_000
    batch_size: int = 16  # global: split across DDP processes
    warmup_iters: int = 0  # only the fusion (GuidedSR.warmup_modules()) trains for this many iterations
    ema: float = 0.0  # EMA decay of G; 0 disables
    amp: AmpMode = "none"
    channels_last: bool = False
    compile: bool = False
    nan_patience: int = 10  # stop after this many non-finite steps in a row
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = 5000
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    d_updates: bool = True  # train the discriminators (ignored when no adversarial term is on)
    # D_I(HR) and D_GM(M(HR)) once per step: the G step keeps their graph for the D step
    # (the reference runs them twice); not with loss.term_order = "official"
    reuse_real_logits: bool = False
    time_limit_s: float = 0.0  # stop (with a checkpoint, resumable) after this many seconds; 0 = none


@dataclass
class OptimConfig:
    """Adam for G, D_I and D_GM, each with a MultiStepLR schedule."""

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay_g: float = 0.0
    weight_decay_d: float = 0.0
    milestones: list = field(default_factory=lambda: [50_000, 100_000, 200_000, 300_000])
    gamma: float = 0.5
    fused: bool = False  # torch's fused Adam kernel (fewer passes; rounding differs from the loop)


def _loss_fields() -> list[tuple[str, Any, Any]]:
    """``[loss]`` fields read from :class:`~gradguide.losses.SPSRLoss`'s own signature
    (its keyword arguments, types and defaults: stated once, there), then the two
    discriminators. A path argument (``vgg_weights``) is a string, empty for ``None``; the
    extra terms (``terms``) a table; a ready module (``feature_extractor``) is not a key."""
    hints = typing.get_type_hints(SPSRLoss.__init__)
    out: list[tuple[str, Any, Any]] = []
    for name, p in inspect.signature(SPSRLoss.__init__).parameters.items():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or name == "feature_extractor":
            continue
        tp, default = hints[name], p.default
        if name == "terms":
            out.append((name, dict, field(default_factory=dict)))
        elif typing.get_origin(tp) in (Union, types.UnionType):
            out.append((name, str, field(default="" if default is None else str(default))))
        else:
            out.append((name, tp, field(default=default)))
    return out + [
        ("discriminator", str, field(default="vgg128")),  # D_I
        ("gradient_discriminator", str, field(default="vgg128")),  # D_GM
        ("discriminator_nf", int, field(default=64)),  # base width of both discriminators
    ]


#: the :class:`~gradguide.losses.SPSRLoss` keyword arguments that ``[loss]`` holds
SPSR_LOSS_KEYS: tuple[str, ...] = tuple(n for n, _, _ in _loss_fields()[:-3])

LossConfig = dataclasses.make_dataclass("LossConfig", _loss_fields())
LossConfig.__module__ = __name__
LossConfig.__doc__ = """The objective: :class:`gradguide.losses.SPSRLoss`'s keyword arguments (Eq. 10
weights, criteria, paddings, VGG19 layer and file, extra terms as ``[loss.terms]``),
with its defaults, plus the discriminators. A weight of 0 disables the term, and a
discriminator whose adversarial weight is 0 is not built."""


@dataclass
class ValConfig:
    every: int = 5000  # 0 disables validation
    metric: ValMetric = "psnr_y"  # save-best metric
    mode: MetricMode = "max"
    max_images: int = 0  # 0 = all
    colour: bool = True  # also PSNR-RGB, CIEDE2000 and the mean signed RGB error (colour drift Y cannot show)


@dataclass
class LogConfig:
    every: int = 100
    tensorboard: bool = True  # when tensorboard is installed
    progress: bool = True  # rich progress bar (rank 0)


@dataclass
class Recipe:
    name: str = ""
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    val: ValConfig = field(default_factory=ValConfig)
    log: LogConfig = field(default_factory=LogConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)  # Real-ESRGAN's OTF pipeline (docs/real-world.md)
    source: str = field(default="<dict>", compare=False)  # the file it came from (not a TOML key)

    def validate(self) -> "Recipe":
        """Check cross-field constraints; raise :class:`RecipeError` naming the key."""
        src = self.source
        m, d, t, o, l, v = self.model, self.data, self.train, self.optim, self.loss, self.val

        def bad(key: str, why: str) -> RecipeError:
            return RecipeError(f"{src}: {key} {why}")

        _check_enums(self)
        _check_numbers(self, bad)
        if m.scale < 1:
            raise bad("model.scale", f"must be >= 1, got {m.scale}")
        backbones = registries().backbones
        if m.backbone not in backbones:
            raise bad("model.backbone", f"{m.backbone!r} is not a registered backbone ({', '.join(backbones.names()) or 'none'})")
        scales = backbones.get(m.backbone).scales
        if scales and m.scale not in scales:
            raise bad("model.scale", f"{m.scale} is not supported by backbone {m.backbone!r} (supported: {', '.join(map(str, scales))})")
        if m.edge_pad < 0:
            raise bad("model.edge_pad", f"must be >= 0, got {m.edge_pad}")
        if m.edge_pad and m.guidance == "none":
            raise bad("model.edge_pad", "is a property of gradguide.wrap: it needs model.guidance 'paper' or 'lr'")
        if d.crop < m.scale or d.crop % m.scale:
            raise bad("data.crop", f"{d.crop} must be a positive multiple of model.scale={m.scale}")
        if d.workers < 0:
            raise bad("data.workers", "must be >= 0")
        if not 0.0 <= d.border_crops <= 1.0:
            raise bad("data.border_crops", f"must be in [0, 1], got {d.border_crops}")
        if d.lr_from != "image" and (d.lr or d.source != "folder"):
            raise bad("data.lr_from", f"{d.lr_from!r} makes the LR from the HR patch: it needs an HR folder without data.lr (source 'folder')")
        if t.iterations < 1:
            raise bad("train.iterations", f"must be >= 1, got {t.iterations}")
        if t.batch_size < 1:
            raise bad("train.batch_size", f"must be >= 1, got {t.batch_size}")
        if t.warmup_iters < 0:
            raise bad("train.warmup_iters", "must be >= 0")
        if t.warmup_iters and not self.uses_gradient_branch:
            raise bad("train.warmup_iters", "needs a gradient branch (model.guidance 'paper' or 'lr'); guidance 'none' has no fusion block")
        if not 0.0 <= t.ema < 1.0:
            raise bad("train.ema", f"must be in [0, 1), got {t.ema}")
        if t.nan_patience < 1:
            raise bad("train.nan_patience", "must be >= 1")
        if t.time_limit_s < 0:
            raise bad("train.time_limit_s", "must be >= 0")
        if t.checkpoint_every < 1:
            raise bad("train.checkpoint_every", "must be >= 1")
        if l.term_order == "official":  # exact reproduction: nothing may reorder or re-round the reference's step
            for key, on in (("train.reuse_real_logits", t.reuse_real_logits), ("train.channels_last", t.channels_last),
                            ("train.compile", t.compile), ("optim.fused", o.fused), ("train.amp", t.amp != "none")):
                if on:
                    raise bad(key, "must be off with loss.term_order = 'official' (it changes the order or rounding of the reference's step)")
        if len(o.betas) != 2 or not all(isinstance(b, (int, float)) for b in o.betas):
            raise bad("optim.betas", f"must be two numbers, got {o.betas!r}")
        if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in o.milestones):
            raise bad("optim.milestones", f"must be positive integers, got {o.milestones!r}")
        if list(o.milestones) != sorted(o.milestones):
            raise bad("optim.milestones", f"must be increasing, got {o.milestones!r}")
        for k in ("lr_g", "lr_d"):
            if not 0 < getattr(o, k) < 1:
                raise bad(f"optim.{k}", f"must be in (0, 1), got {getattr(o, k)}")
        for i, b in enumerate(o.betas):
            if not 0 <= b < 1:
                raise bad(f"optim.betas[{i}]", f"must be in [0, 1), got {b}")
        if not 0 < o.eps < 1:
            raise bad("optim.eps", f"must be in (0, 1), got {o.eps}")
        for k in ("weight_decay_g", "weight_decay_d"):
            if not 0 <= getattr(o, k) < 1:
                raise bad(f"optim.{k}", f"must be in [0, 1), got {getattr(o, k)}")
        if not 0 < o.gamma <= 1:
            raise bad("optim.gamma", f"must be in (0, 1], got {o.gamma}")
        for k in ("discriminator_nf",):
            if getattr(l, k) < 1:
                raise bad(f"loss.{k}", f"must be >= 1, got {getattr(l, k)}")
        if v.max_images < 0:
            raise bad("val.max_images", f"must be >= 0, got {v.max_images}")
        if self.log.every < 1:
            raise bad("log.every", f"must be >= 1, got {self.log.every}")
        weights = {f: getattr(l, f) for f in SPSR_LOSS_KEYS if typing.get_type_hints(LossConfig)[f] is float}
        weights.update({f"terms.{k}": (w.get("weight", 1.0) if isinstance(w, dict) else w) for k, w in l.terms.items()})
        for k, w in weights.items():
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise bad(f"loss.{k}", f"must be >= 0, got {w!r}")
        losses = registries().losses
        for k in l.terms:
            if k not in losses or not losses.get(k).term:
                known = ", ".join(n for n, e in losses.items() if e.term) or "none registered"
                raise bad(f"loss.terms.{k}", f"is not a registered loss term ({known})")
            if weights[f"terms.{k}"] > 0 and getattr(losses.get(k).factory, "uses_ema", False) and t.ema <= 0:
                raise bad(f"loss.terms.{k}", f"compares G with its EMA copy: set train.ema > 0 (e.g. 0.999), got {t.ema}")
        for key, why in self.degradation.problems():
            raise bad(f"degradation.{key}", why)
        if self.degradation.enabled and d.lr:
            raise bad("degradation.enabled", "makes the LR from the HR on the fly; it cannot be used with a paired data.lr folder")
        if not self.uses_gradient_branch and l.branch > 0:
            raise bad("loss.branch", "must be 0 for model.guidance 'none' (no gradient branch)")
        if v.every < 0:
            raise bad("val.every", "must be >= 0")
        return self

    @property
    def uses_gradient_branch(self) -> bool:
        return self.model.guidance != "none"


def _check_enums(recipe: "Recipe") -> None:
    """Every ``Literal``-typed field holds one of its values (the type is the one list)."""
    for section, cls in _SECTIONS.items():
        for name, tp in _field_types(cls).items():
            if typing.get_origin(tp) is Literal:
                _check_type(getattr(getattr(recipe, section), name), tp, f"{recipe.source}: {section}.{name}")


def _check_numbers(recipe: "Recipe", bad) -> None:
    """Every number finite; every backbone size positive.

    ``model.backbone_config`` is free-form (the backbone factory's keyword arguments), so
    its values are checked against the factory's defaults: a parameter whose default is a
    positive integer (a width, a depth, a count) must be a positive integer."""
    def walk(value: Any, key: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(key, f"must be a finite number, got {value}")
        if isinstance(value, (list, tuple)):
            for i, x in enumerate(value):
                walk(x, f"{key}[{i}]")
        elif isinstance(value, dict):
            for k, x in value.items():
                walk(x, f"{key}.{k}")

    for section in _SECTIONS:
        for f in dataclasses.fields(getattr(recipe, section)):
            walk(getattr(getattr(recipe, section), f.name), f"{section}.{f.name}")
    cfg = recipe.model.backbone_config
    if not cfg:
        return
    name = recipe.model.backbone
    backbones = registries().backbones
    if name not in backbones:
        return
    try:
        params = inspect.signature(backbones.get(name).factory).parameters
    except (TypeError, ValueError):
        return
    for k, value in cfg.items():
        p = params.get(k)
        if p is None:
            continue
        default = p.default
        sizes = value if isinstance(value, (list, tuple)) else [value]
        size_default = isinstance(default, int) and not isinstance(default, bool) and default >= 1
        size_list = isinstance(default, (list, tuple)) and default and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in default
        )
        if (size_default or size_list) and not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in sizes
        ):
            raise bad(f"model.backbone_config.{k}", f"must be a positive integer{' list' if size_list else ''}, got {value!r}")


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "optim": OptimConfig,
    "loss": LossConfig,
    "val": ValConfig,
    "log": LogConfig,
    "degradation": DegradationConfig,
}
_TOP_KEYS = ("name", "description", *_SECTIONS)


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Type-check a TOML value against a field type (ints widen to float)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_type(value, args[0], where)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) is type(allowed[0]):
            return value
        raise RecipeError(f"{where} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is list or origin is list:
        if isinstance(value, list):
            return list(value)
    elif tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    else:  # pragma: no cover - no other field types exist
        return value
    name = getattr(tp, "__name__", str(tp))
    raise RecipeError(f"{where} must be {name}, got {type(value).__name__} {value!r}")


def recipe_from_dict(data: dict, source: str = "<dict>") -> Recipe:
    """Build a :class:`Recipe` from parsed TOML, refusing unknown tables/keys and wrong types."""
    for key in data:
        if key not in _TOP_KEYS:
            raise RecipeError(f"{source}: unknown key {key!r}{_suggest(key, _TOP_KEYS)}")
    kwargs: dict[str, Any] = {}
    for key in ("name", "description"):
        if key in data:
            kwargs[key] = _check_type(data[key], str, f"{source}: {key}")
    for section, cls in _SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise RecipeError(f"{source}: [{section}] must be a table, got {type(table).__name__}")
        if section == "model":
            table = _migrate_model(table, source)
        ftypes = _field_types(cls)
        vals = {}
        for key, value in table.items():
            if key not in ftypes:
                raise RecipeError(f"{source}: unknown key '{section}.{key}'{_suggest(key, list(ftypes))}")
            vals[key] = _check_type(value, ftypes[key], f"{source}: {section}.{key}")
        kwargs[section] = cls(**vals)
    return Recipe(source=source, **kwargs)


def load_recipe(path: Union[str, os.PathLike, Any], *, validate: bool = True) -> Recipe:
    """Load a recipe from a TOML file (a path or an importlib.resources Traversable)."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8") if hasattr(path, "read_text") else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{name}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{name}: cannot read recipe ({type(exc).__name__}: {exc})") from None
    try:
        data = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise RecipeError(f"{name}: invalid TOML ({exc})") from None
    recipe = recipe_from_dict(data, source=name)
    if not recipe.name:
        recipe.name = Path(name).stem
    return recipe.validate() if validate else recipe


def _coerce(text: str, tp: Any, where: str) -> Any:
    """Coerce a ``--set`` value: TOML syntax first (``8``, ``1e-4``, ``[1,2]``, ``true``,
    ``"x"``), else the bare string for string fields (``Literal`` ones included)."""
    try:
        value = _toml.loads(f"v = {text}")["v"]
    except _toml.TOMLDecodeError:
        if tp is str:
            return text
        if typing.get_origin(tp) is Literal:
            return _check_type(text.strip(), tp, where)
        low = text.strip().lower()
        if tp is bool and low in ("yes", "no", "on", "off", "1", "0"):
            return low in ("yes", "on", "1")
        raise RecipeError(f"{where}: cannot parse {text!r} as {getattr(tp, '__name__', tp)}") from None
    if tp is str and not isinstance(value, str):
        return text  # e.g. --set data.hr=2024 stays a string
    return _check_type(value, tp, where)


def apply_overrides(recipe: Recipe, overrides: Sequence[str], *, validate: bool = True) -> Recipe:
    """Apply ``section.key=value`` overrides (``--set``) to a copy of ``recipe``."""
    out = dataclasses.replace(recipe, **{s: dataclasses.replace(getattr(recipe, s)) for s in _SECTIONS})
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected section.key=value")
        path, text = item.split("=", 1)
        path = path.strip()
        parts = path.split(".")
        if len(parts) == 1 and parts[0] in ("name", "description"):
            setattr(out, parts[0], text)
            continue
        if len(parts) < 2 or parts[0] not in _SECTIONS:
            raise RecipeError(f"--set {path}: unknown section {parts[0]!r}{_suggest(parts[0], list(_SECTIONS))}")
        section, key = parts[0], parts[1]
        ftypes = _field_types(_SECTIONS[section])
        if section == "model" and key in DEPRECATED_MODEL_KEYS and len(parts) == 2:
            value = _coerce(text, str if key in ("arch", "fusion") else int, f"--set {path}")
            migrated = _migrate_model({key: value, "backbone_config": dict(out.model.backbone_config)}, f"--set {path}")
            for k, v in migrated.items():
                setattr(out.model, k, v)
            continue
        if key not in ftypes:
            raise RecipeError(f"--set {path}: unknown key '{section}.{key}'{_suggest(key, list(ftypes))}")
        obj = getattr(out, section)
        if len(parts) > 2:  # a key inside a free table, e.g. model.backbone_config.nf=32
            if ftypes[key] is not dict:
                raise RecipeError(f"--set {path}: '{section}.{key}' is not a table")
            table = dict(getattr(obj, key))
            try:
                table[".".join(parts[2:])] = _toml.loads(f"v = {text}")["v"]
            except _toml.TOMLDecodeError:
                table[".".join(parts[2:])] = text
            setattr(obj, key, table)
        else:
            setattr(obj, key, _coerce(text, ftypes[key], f"--set {path}"))
    return out.validate() if validate else out


def list_recipes() -> list[str]:
    """Names of the registered recipes (shipped ones and plugins')."""
    return registries().recipes.names()


def resolve_recipe(name_or_file: Union[str, os.PathLike], *, validate: bool = True) -> Recipe:
    """A registered recipe name (``spsr_x4``) or a path to a TOML file."""
    text = str(name_or_file)
    p = Path(text)
    if p.suffix == ".toml" or os.sep in text or p.exists():
        if not p.is_file():
            raise RecipeError(f"{text}: recipe file not found")
        return load_recipe(p, validate=validate)
    recipes = registries().recipes
    if text not in recipes:
        raise RecipeError(f"recipe {text!r} is not registered{_suggest(text, recipes.names())}; pass a .toml path or see `gradguide recipes`")
    entry = recipes.get(text)
    recipe = load_recipe(entry.path, validate=False)
    recipe.source = f"recipe {text!r} ({entry.path})"
    recipe.name = recipe.name or text
    return recipe.validate() if validate else recipe


def recipe_to_dict(recipe: Recipe) -> dict:
    d = dataclasses.asdict(recipe)
    d.pop("source", None)
    return d


def _toml_key(k: Any) -> str:
    """A bare key where TOML allows one, else a quoted key (``"a.b"`` stays one key)."""
    k = str(k)
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _toml_value(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):  # a TOML basic string: JSON's escapes are TOML's, plus DEL
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def recipe_to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML (written next to checkpoints; loads back identically)."""
    d = recipe_to_dict(recipe)
    lines = [f"name = {_toml_value(d.pop('name'))}", f"description = {_toml_value(d.pop('description'))}"]
    for section in _SECTIONS:
        lines.append(f"\n[{section}]")
        for k, v in d[section].items():
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def builtin_recipes() -> list:
    """:class:`gradguide.registry.RecipeEntry` for every TOML shipped in ``gradguide.recipes``."""
    from importlib import resources

    out = []
    for res in sorted(resources.files("gradguide.recipes").iterdir(), key=lambda r: r.name):
        if res.name.endswith(".toml"):
            try:
                desc = str(_toml.loads(res.read_text(encoding="utf-8")).get("description", ""))
            except (_toml.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
                desc = f"(unreadable: {type(exc).__name__})"
            out.append(RecipeEntry(name=res.name[: -len(".toml")], path=res, description=desc))
    return out
