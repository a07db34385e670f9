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
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import RecipeError

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

ARCHS = ("spsr", "rrdbnet", "wrap")
AMP_MODES = ("none", "bf16", "fp16")
FUSIONS = ("paper", "lr")
PIXEL_CRITERIA = ("l1", "mse", "charbonnier")
METRIC_MODES = ("max", "min")
VAL_METRICS = ("psnr_y", "ssim_y")


@dataclass
class ModelConfig:
    """The generator.

    ``arch``: ``"spsr"`` (the paper-exact SPSR generator, :func:`gradguide.spsr.create_spsr`),
    ``"rrdbnet"`` (plain ESRGAN RRDBNet, no gradient branch) or ``"wrap"`` (any registered
    backbone wrapped with :func:`gradguide.wrap`). ``pretrained`` is a checkpoint whose
    weights initialise the SR backbone (missing/unexpected keys are reported).
    """

    arch: str = "spsr"
    scale: int = 4
    nf: int = 64
    nb: int = 23
    gc: int = 32
    in_nc: int = 3
    out_nc: int = 3
    backbone: str = "rrdbnet"  # registry name, for arch = "wrap"
    backbone_config: dict = field(default_factory=dict)  # keyword arguments of that backbone's factory
    fusion: str = "paper"  # for arch = "wrap": "paper" | "lr"
    pretrained: str = ""  # path of a PSNR-oriented checkpoint loaded into the backbone
    pretrained_strict: bool = False  # refuse missing/unexpected keys instead of reporting them


@dataclass
class DataConfig:
    """Training and validation data. Paths are empty in shipped recipes: they come from the
    command line (``--data-hr``, ``--data-lr``, ``--val-hr``, ``--val-lr``)."""

    source: str = "folder"  # "folder" | "skimage" (scikit-image's bundled photos, for the demo)
    hr: str = ""
    lr: str = ""  # optional: paired LR folder; empty = bicubic (MATLAB imresize) from HR
    val_hr: str = ""
    val_lr: str = ""
    crop: int = 128  # HR crop size; the LR patch is crop // scale
    augment: bool = True
    workers: int = 0
    seed: int = 0


@dataclass
class TrainConfig:
    iterations: int = 500_000
    batch_size: int = 16  # global: split across DDP processes
    warmup_iters: int = 0  # only the fusion (GuidedSR.warmup_modules()) trains for this many iterations
    ema: float = 0.0  # EMA decay of G; 0 disables
    amp: str = "none"  # "none" | "bf16" | "fp16"
    channels_last: bool = False
    compile: bool = False
    nan_patience: int = 10  # stop after this many non-finite steps in a row
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = 5000
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    d_updates: bool = True  # train the discriminators (ignored when no adversarial term is on)
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


@dataclass
class LossConfig:
    """Weights of Eq. 10 (:class:`gradguide.losses.SPSRLoss`). A weight of 0 disables the
    term, and a discriminator whose adversarial weight is 0 is not built."""

    perceptual: float = 1.0  # L_Per (VGG19 conv5_4 before ReLU, L1)
    pixel: float = 0.01  # beta_I  (image-space pixel loss)
    gan: float = 0.005  # gamma_I (RaGAN on the image, D_I)
    gradient_pixel: float = 0.01  # beta_GM (pixel loss on M(SR))
    gradient_gan: float = 0.005  # gamma_GM (RaGAN on M(SR), D_GM)
    branch: float = 0.5  # beta_GB (gradient-branch output vs M(HR))
    pixel_criterion: str = "l1"  # "l1" | "mse" | "charbonnier"
    gradient_criterion: str = "l1"  # the official code uses "mse"
    gradient_padding: str = "zeros"  # padding of M in the gradient terms
    perceptual_layer: str = "conv5_4"
    vgg_weights: str = ""  # VGG19 weights file; empty = the torch hub cache
    on_missing_vgg: str = "error"  # "error" | "drop" (warn and train without L_Per)
    discriminator: str = "vgg128"  # D_I
    gradient_discriminator: str = "vgg128"  # D_GM
    discriminator_nf: int = 64  # base width of both discriminators


@dataclass
class ValConfig:
    every: int = 5000  # 0 disables validation
    metric: str = "psnr_y"  # save-best metric
    mode: str = "max"  # "max" | "min"
    max_images: int = 0  # 0 = all


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
    source: str = field(default="<dict>", compare=False)  # the file it came from (not a TOML key)

    def validate(self) -> "Recipe":
        """Check cross-field constraints; raise :class:`RecipeError` naming the key."""
        src = self.source
        m, d, t, o, l, v = self.model, self.data, self.train, self.optim, self.loss, self.val

        def bad(key: str, why: str) -> RecipeError:
            return RecipeError(f"{src}: {key} {why}")

        _check_numbers(self, bad)
        if m.arch not in ARCHS:
            raise bad("model.arch", f"must be one of {', '.join(ARCHS)}, got {m.arch!r}")
        if m.fusion not in FUSIONS:
            raise bad("model.fusion", f"must be one of {', '.join(FUSIONS)}, got {m.fusion!r}")
        if m.scale < 1:
            raise bad("model.scale", f"must be >= 1, got {m.scale}")
        for k in ("nf", "nb", "gc", "in_nc", "out_nc"):
            if getattr(m, k) < 1:
                raise bad(f"model.{k}", f"must be >= 1, got {getattr(m, k)}")
        from ..plugins import registries

        backbones = registries().backbones
        bb_name = m.backbone if m.arch == "wrap" else "rrdbnet"
        if bb_name in backbones:
            scales = backbones.get(bb_name).scales
            if scales and m.scale not in scales:
                raise bad("model.scale", f"{m.scale} is not supported by backbone {bb_name!r} (supported: {', '.join(map(str, scales))})")
        elif m.arch == "wrap":
            raise bad("model.backbone", f"{m.backbone!r} is not a registered backbone ({', '.join(backbones.names()) or 'none'})")
        elif m.scale & (m.scale - 1):
            # the RRDB trunk upsamples by repeated x2 (nearest + conv)
            raise bad("model.scale", f"{m.scale} is not supported by {m.arch} (needs a power of two)")
        if d.source not in ("folder", "skimage"):
            raise bad("data.source", f"must be 'folder' or 'skimage', got {d.source!r}")
        if d.crop < m.scale or d.crop % m.scale:
            raise bad("data.crop", f"{d.crop} must be a positive multiple of model.scale={m.scale}")
        if d.workers < 0:
            raise bad("data.workers", "must be >= 0")
        if t.iterations < 1:
            raise bad("train.iterations", f"must be >= 1, got {t.iterations}")
        if t.batch_size < 1:
            raise bad("train.batch_size", f"must be >= 1, got {t.batch_size}")
        if t.warmup_iters < 0:
            raise bad("train.warmup_iters", "must be >= 0")
        if t.warmup_iters and m.arch == "rrdbnet":
            raise bad("train.warmup_iters", "needs a gradient branch (model.arch 'spsr' or 'wrap'); rrdbnet has no fusion block")
        if not 0.0 <= t.ema < 1.0:
            raise bad("train.ema", f"must be in [0, 1), got {t.ema}")
        if t.amp not in AMP_MODES:
            raise bad("train.amp", f"must be one of {', '.join(AMP_MODES)}, got {t.amp!r}")
        if t.nan_patience < 1:
            raise bad("train.nan_patience", "must be >= 1")
        if t.time_limit_s < 0:
            raise bad("train.time_limit_s", "must be >= 0")
        if t.checkpoint_every < 1:
            raise bad("train.checkpoint_every", "must be >= 1")
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
        for k in ("perceptual", "pixel", "gan", "gradient_pixel", "gradient_gan", "branch"):
            if getattr(l, k) < 0:
                raise bad(f"loss.{k}", f"must be >= 0, got {getattr(l, k)}")
        for k in ("pixel_criterion", "gradient_criterion"):
            if getattr(l, k) not in PIXEL_CRITERIA:
                raise bad(f"loss.{k}", f"must be one of {', '.join(PIXEL_CRITERIA)}, got {getattr(l, k)!r}")
        if l.on_missing_vgg not in ("error", "drop"):
            raise bad("loss.on_missing_vgg", f"must be 'error' or 'drop', got {l.on_missing_vgg!r}")
        if m.arch == "rrdbnet" and l.branch > 0:
            raise bad("loss.branch", "must be 0 for model.arch 'rrdbnet' (no gradient branch)")
        if v.metric not in VAL_METRICS:
            raise bad("val.metric", f"must be one of {', '.join(VAL_METRICS)}, got {v.metric!r}")
        if v.mode not in METRIC_MODES:
            raise bad("val.mode", f"must be 'max' or 'min', got {v.mode!r}")
        if v.every < 0:
            raise bad("val.every", "must be >= 0")
        return self

    @property
    def uses_gradient_branch(self) -> bool:
        return self.model.arch in ("spsr", "wrap")


def _check_numbers(recipe: "Recipe", bad) -> None:
    """Every number finite; every backbone size positive.

    ``model.backbone_config`` is free-form (the backbone factory's keyword arguments), so
    its values are checked against the factory's defaults: a parameter whose default is a
    positive integer (a width, a depth, a count) must be a positive integer."""
    import math

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
    import inspect

    from ..plugins import registries

    name = recipe.model.backbone if recipe.model.arch == "wrap" else "rrdbnet"
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
    ``"x"``), else the bare string for string fields."""
    try:
        value = _toml.loads(f"v = {text}")["v"]
    except _toml.TOMLDecodeError:
        if tp is str:
            return text
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
    from ..plugins import registries

    return registries().recipes.names()


def resolve_recipe(name_or_file: Union[str, os.PathLike], *, validate: bool = True) -> Recipe:
    """A registered recipe name (``spsr_x4``) or a path to a TOML file."""
    text = str(name_or_file)
    p = Path(text)
    if p.suffix == ".toml" or os.sep in text or p.exists():
        if not p.is_file():
            raise RecipeError(f"{text}: recipe file not found")
        return load_recipe(p, validate=validate)
    from ..plugins import registries

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


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
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

    from ..registry import RecipeEntry

    out = []
    for res in sorted(resources.files("gradguide.recipes").iterdir(), key=lambda r: r.name):
        if res.name.endswith(".toml"):
            try:
                desc = str(_toml.loads(res.read_text(encoding="utf-8")).get("description", ""))
            except (_toml.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
                desc = f"(unreadable: {type(exc).__name__})"
            out.append(RecipeEntry(name=res.name[: -len(".toml")], path=res, description=desc))
    return out
