"""Registry entries (plain data) and a registry that refuses duplicate names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

from torch import nn

from .errors import DuplicateNameError

__all__ = [
    "Registry",
    "DuplicateNameError",
    "BackboneEntry",
    "CheckpointLayout",
    "DiscriminatorEntry",
    "LossEntry",
    "RecipeEntry",
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


@dataclass(frozen=True)
class BackboneEntry:
    """A backbone architecture known to gradguide.

    Attributes:
        name: registry name (``"rrdbnet"``, ``"edsr"``...).
        factory: ``factory(**config) -> nn.Module`` building the plain backbone.
        classes: model classes this entry's spec applies to (``wrap(model)`` with no spec
            looks the model's class up here).
        class_names: the same as ``"module.QualName"`` strings, for classes of optional
            third-party packages (e.g. spandrel) that should not be imported just to
            list the registry; matched against the model's MRO.
        spec: ``spec(model) -> GuidanceSpec`` giving tap points etc. for a built model.
        config_of: ``config_of(model) -> dict`` so a wrapped model can be rebuilt on load.
        description: one line for ``gradguide backbones``.
    """

    name: str
    factory: Callable[..., nn.Module]
    classes: tuple[type, ...]
    spec: Callable[[nn.Module], Any]
    config_of: Optional[Callable[[nn.Module], dict]] = None
    description: str = ""
    scales: tuple[int, ...] = (2, 4)
    class_names: tuple[str, ...] = ()

    def covers(self, model: nn.Module) -> bool:
        """Whether ``model`` is an instance of one of this entry's classes."""
        if self.classes and isinstance(model, self.classes):
            return True
        if self.class_names:
            mro = {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}
            return any(n in mro for n in self.class_names)
        return False


@dataclass(frozen=True)
class CheckpointLayout:
    """A checkpoint key layout.

    Attributes:
        name: e.g. ``"spsr-official"``, ``"esrgan-old"``, ``"basicsr-rrdbnet"``.
        detect: ``detect(state_dict, metadata) -> bool``.
        convert: ``convert(state_dict, metadata) -> (arch, config, canonical_state_dict,
            ignored_keys)`` where ``arch`` names a builder in the architecture registry
            and ``ignored_keys`` lists keys deliberately dropped, with reasons.
        priority: higher is tried first.
    """

    name: str
    detect: Callable[[dict, dict], bool]
    convert: Callable[[dict, dict], tuple]
    priority: int = 0
    description: str = ""


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


