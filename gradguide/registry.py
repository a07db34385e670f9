"""Registry entries (plain data) and a registry that refuses duplicate names.

The one architecture registry holds :class:`Architecture` entries, in the spirit of
spandrel's ``Architecture`` objects: each owns its factory, the argument that carries the
scale, its checkpoint layouts and its guidance spec. Plain backbones (``rrdbnet``,
``edsr``...) and guided generators (``spsr``, ``guided``) are entries alike.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generic, Iterator, Mapping, NamedTuple, Optional, Sequence, TypeVar

from torch import Tensor, nn

from .errors import DuplicateNameError
from .spec import GuidanceSpec

__all__ = [
    "Registry",
    "DuplicateNameError",
    "Architecture",
    "BackboneEntry",
    "CheckpointLayout",
    "Converted",
    "DiscriminatorEntry",
    "LossEntry",
    "RecipeEntry",
    "PluginProblem",
]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry. ``add`` raises on a duplicate name; ``get`` lists what exists."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owner: dict[str, str] = {}

    def add(self, name: str, item: T, owner: str = "?") -> None:
        if name in self._items:
            raise DuplicateNameError(
                f"{self.kind} {name!r} from plugin {owner!r} is already registered by plugin "
                f"{self._owner[name]!r}"
            )
        self._items[name] = item
        self._owner[name] = owner

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def owner(self, name: str) -> str:
        return self._owner[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]

    def select(self, keep: Callable[[T], bool], kind: Optional[str] = None) -> "Registry[T]":
        """A registry of the entries ``keep`` accepts (same entries, same owners)."""
        out: Registry[T] = Registry(kind or self.kind)
        for n, item in self.items():
            if keep(item):
                out.add(n, item, self._owner[n])
        return out


class Converted(NamedTuple):
    """What a layout's ``convert`` returns."""

    config: dict  #: keyword arguments of the architecture's factory
    state_dict: dict  #: the weights under the architecture's own module names
    ignored: dict  #: keys deliberately dropped -> the reason (never silently)


#: ``convert(state_dict, metadata, scale) -> Converted``; ``scale`` is the caller's
#: ``scale=`` (``None``: infer it). Raise :class:`~gradguide.errors.CheckpointError`,
#: ``KeyError`` or ``ValueError`` for a file it cannot convert.
ConvertFn = Callable[[Mapping[str, Tensor], Mapping[str, str], Optional[int]], Converted]


@dataclass(frozen=True)
class CheckpointLayout:
    """A checkpoint key layout of one architecture (the entry that lists it).

    Detection is data: the layout matches a state dict holding every key of ``keys`` and
    none of ``absent`` (and, when given, for which ``detect(state_dict, metadata)`` is
    true). Layouts are tried by decreasing ``priority``.

    Attributes:
        name: e.g. ``"esrgan-old"``, ``"basicsr-edsr"``.
        convert: see :data:`ConvertFn`.
        keys / absent: keys that must / must not be present.
        priority: higher is tried first.
        description: one line for ``gradguide plugins``.
        detect: optional extra test, ``detect(state_dict, metadata) -> bool``.
        arch: the architecture it converts to (filled in from the owning entry).
    """

    name: str
    convert: ConvertFn
    keys: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    priority: int = 0
    description: str = ""
    detect: Optional[Callable[[Mapping[str, Tensor], Mapping[str, str]], bool]] = None
    arch: str = ""

    def matches(self, sd: Mapping[str, Any], meta: Mapping[str, str]) -> bool:
        if not all(k in sd for k in self.keys) or any(k in sd for k in self.absent):
            return False
        return self.detect is None or bool(self.detect(sd, meta))


@dataclass(frozen=True)
class Architecture:
    """A model architecture gradguide can build, wrap, save and load.

    Attributes:
        name: registry name (``"rrdbnet"``, ``"edsr"``, ``"spsr"``...), recorded in checkpoints.
        factory: ``factory(**config) -> nn.Module``.
        classes: model classes this entry describes (``wrap(model)`` with no spec and
            :func:`gradguide.save` look a model's class up here).
        spec: ``spec(model) -> GuidanceSpec`` for a built model; ``None`` for an entry whose
            factory builds an already guided generator (``spsr``, ``guided``).
        config_of: ``config_of(model) -> dict``, the factory's keyword arguments, so a
            saved model can be rebuilt.
        description: one line for ``gradguide backbones``.
        scales: the scales the factory supports.
        class_names: like ``classes``, as ``"module.QualName"`` strings, for classes of
            optional packages (spandrel) that should not be imported just to list the
            registry; matched against the model's MRO.
        scale_arg: the factory's keyword that carries the scale (``"scale"``, ``"upscale"``;
            ``None``: the factory takes no scale).
        layouts: the checkpoint layouts that convert to this architecture.
        guided_from: ``(backbone, fusion)`` when this entry is the named form of a backbone
            with a fusion (``spsr`` is ``("rrdbnet", "paper")``): recipes asking for that
            pair build this entry, so checkpoints record its name.
    """

    name: str
    factory: Callable[..., nn.Module]
    classes: tuple[type, ...] = ()
    spec: Optional[Callable[[nn.Module], GuidanceSpec]] = None
    config_of: Optional[Callable[[nn.Module], dict]] = None
    description: str = ""
    scales: tuple[int, ...] = (2, 4)
    class_names: tuple[str, ...] = ()
    scale_arg: Optional[str] = "scale"
    layouts: tuple[CheckpointLayout, ...] = field(default=())
    guided_from: Optional[tuple[str, str]] = None

    def __post_init__(self) -> None:
        if self.scale_arg == "scale":  # the default: check the factory really calls it that
            object.__setattr__(self, "scale_arg", _scale_arg_of(self.factory))
        object.__setattr__(self, "layouts", tuple(
            l if l.arch == self.name else _with_arch(l, self.name) for l in self.layouts
        ))

    @property
    def is_backbone(self) -> bool:
        """A plain SR network that gradient guidance can be attached to (it has a spec)."""
        return self.spec is not None

    def covers(self, model: nn.Module) -> bool:
        """Whether ``model`` is an instance of one of this entry's classes."""
        if self.classes and isinstance(model, self.classes):
            return True
        if self.class_names:
            mro = {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}
            return any(n in mro for n in self.class_names)
        return False

    def build(self, config: Mapping[str, Any], scale: Optional[int] = None) -> nn.Module:
        """``factory(**config)``, with ``scale`` passed as the factory's own scale argument."""
        kwargs = dict(config)
        if scale is not None and self.scale_arg:
            kwargs.setdefault(self.scale_arg, int(scale))
        return self.factory(**kwargs)


def _scale_arg_of(factory: Callable[..., Any]) -> Optional[str]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return "scale"
    for name in ("scale", "upscale"):
        if name in params:
            return name
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return "scale"
    return None


def _with_arch(layout: CheckpointLayout, arch: str) -> CheckpointLayout:
    return replace(layout, arch=arch)


#: the name plugins used before there was one architecture registry
BackboneEntry = Architecture


@dataclass(frozen=True)
class DiscriminatorEntry:
    name: str
    factory: Callable[..., nn.Module]
    description: str = ""


@dataclass(frozen=True)
class LossEntry:
    """A loss module. With ``term=True`` it is also an extra generator term of
    :class:`gradguide.losses.SPSRLoss` (switched on by weight, recipe ``[loss.terms]``):
    ``factory(**options)`` builds a module whose ``forward(out: SROutput, hr: Tensor)``
    returns an unweighted scalar."""

    name: str
    factory: Callable[..., nn.Module]
    description: str = ""
    term: bool = False


@dataclass(frozen=True)
class RecipeEntry:
    name: str
    path: Any  # a pathlib.Path or importlib.resources Traversable of a TOML file
    description: str = ""


@dataclass
class PluginProblem:
    plugin: str
    reason: str


def layouts_of(entries: Sequence[Architecture]) -> list[CheckpointLayout]:
    """Every layout of ``entries``, highest priority first."""
    return sorted((l for e in entries for l in e.layouts), key=lambda l: -l.priority)
