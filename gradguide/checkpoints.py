"""Reading and writing generator checkpoints: state-dict I/O, then layouts.

:func:`load` reads ``.safetensors`` and ``.pth``/``.pt``/``.ckpt`` files (always
``torch.load(..., weights_only=True)``), unwraps the usual containers (``params_ema``,
``params``, ``state_dict``, DataParallel's ``module.`` prefix), reads gradguide's own
metadata or detects the key layout (:mod:`gradguide.layouts`; each layout belongs to an
entry of the one architecture registry), converts it to the architecture's own names,
builds the architecture with the hyperparameters the file declares or its shapes imply
and loads the weights strictly: every key is either loaded, or listed in the report as
ignored with a reason. Nothing is dropped silently.

What a file claims is bounded before anything is allocated: the architecture is first
built on the meta device and its shapes compared with the file's tensors, so a small
file declaring a huge configuration is refused with one line naming the file. Non-finite
weights are reported (a warning naming the file and the tensors).

Layouts (built-in; plugins add more through their architecture entries):

* ``gradguide``       -- gradguide safetensors with metadata (written by :func:`save`)
* ``spsr-official``   -- the official SPSR generator (:mod:`gradguide.spsr`)
* ``esrgan-old``, ``mmsr-rrdbnet``, ``basicsr-rrdbnet`` -- RRDBNet (:mod:`gradguide.models.rrdb`)
* EDSR, RCAN, SwinIR, SRResNet layouts -- the built-in backbones plugin
"""
from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes
from torch import Tensor, nn

from .errors import CheckpointError
from .bundled import resolve_checkpoint
from .fileio import atomic_write, check_input_file, one_line
from .layouts import convert_state_dict, detect_layout, key_names, load_matching, match_keys
from .plugins import find_architecture, registries
from .spsr import spsr_to_official
from .wrap import GuidedSR

__all__ = [
    "load",
    "save",
    "load_checkpoint",
    "read_state_dict",
    "LoadReport",
    "LoadedCheckpoint",
    "detect_layout",
    "convert_state_dict",
    "convert_checkpoint",
    "build_architecture",
    "architecture_of",
    "FORMAT",
    "spsr_to_official",
    "load_matching",
    "nonfinite_tensors",
]

FORMAT = "gradguide"
PathLike = Union[str, os.PathLike]


# ---------------------------------------------------------------------------------
# reports
@dataclass
class LoadReport:
    """What happened to every key: loaded, ignored (with the reason), missing, unexpected."""

    path: str
    layout: str
    arch: str
    config: dict
    loaded: int = 0
    ignored: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    container: Optional[str] = None
    nonfinite: list[str] = field(default_factory=list)  # tensors holding NaN/inf (warned about)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def summary(self) -> str:
        parts = [f"{self.loaded} tensors loaded"]
        if self.ignored:
            parts.append(f"{len(self.ignored)} ignored")
        if self.missing:
            parts.append(f"missing: {key_names(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected: {key_names(self.unexpected)}")
        return "; ".join(parts)


@dataclass
class LoadedCheckpoint:
    model: nn.Module
    report: LoadReport


# ---------------------------------------------------------------------------------
# reading files
def read_state_dict(path: PathLike) -> tuple[dict[str, Tensor], dict[str, str], Optional[str]]:
    """Read a checkpoint file into ``(state_dict, metadata, container_key)``.

    Raises :class:`CheckpointError` with one line naming the file and the reason.
    """
    p = Path(path)
    check_input_file(p, CheckpointError)  # missing, broken link, link loop, folder: one line each
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: empty file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None
    # a safetensors header (8-byte length, then "{") can start with 0x80 too
    is_torch = (head.startswith(b"PK") or head.startswith(b"\x80")) and head[8:9] != b"{"
    if is_torch and p.suffix == ".safetensors":
        raise CheckpointError(
            f"{p}: named .safetensors but is a PyTorch pickle/zip file; refused (rename it to .pth "
            "to load its tensors, never code)"
        )
    if p.suffix == ".safetensors" or head[8:9] == b"{":
        return (*_read_safetensors(p), None)
    if not is_torch:
        raise CheckpointError(f"{p}: not a checkpoint (neither safetensors nor a PyTorch zip/pickle file)")
    return _read_torch(p)


def _read_safetensors(p: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: not a readable safetensors file (truncated or corrupt?): {one_line(exc)}") from None
    return sd, meta


def _read_torch(p: Path) -> tuple[dict[str, Tensor], dict[str, str], Optional[str]]:
    import pickle

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{p}: refused: {_pickle_refusal(exc)}") from None
    except Exception as exc:  # a damaged pickle can raise nearly anything (IndexError, KeyError, ...)
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint (truncated or corrupt?): {type(exc).__name__}: {one_line(exc, 200)}") from None
    meta: dict[str, str] = {}
    container = None
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model", "generator", "netG"):
            if key in obj and isinstance(obj[key], dict):
                container, obj = key, obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{p}: does not hold a state dict of tensors")
    obj = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    return obj, meta, container


def _pickle_refusal(exc: BaseException) -> str:
    """Why torch's weights-only unpickler refused a file, naming the offending global.
    (Torch's own message is long, holds ANSI codes and suggests ``weights_only=False``,
    which is exactly what must not be done with a file from a stranger.)"""
    text = str(exc)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        what = f"it asks for {m.group(1)}"
    elif m := re.search(r"Unsupported operand (\d+)", text):
        what = f"it uses pickle opcode {m.group(1)}"
    else:
        what = "it holds more than tensors and plain containers"
    return f"{what}, and gradguide loads only tensors and plain containers from a pickle (nothing was run)"


# ---------------------------------------------------------------------------------
# architectures: the one registry (gradguide.registry.Architecture entries)
def build_architecture(arch: str, config: Mapping[str, Any], *, meta_device: bool = False) -> nn.Module:
    """Build the registered architecture ``arch`` with ``config`` (on the meta device with
    ``meta_device``: shapes only, nothing allocated)."""
    archs = registries().architectures
    if arch not in archs:
        raise CheckpointError(f"unknown architecture {arch!r}; known: {', '.join(archs.names())}")
    if meta_device:
        with torch.device("meta"):
            return archs.get(arch).build(config)
    return archs.get(arch).build(config)


def architecture_of(model: nn.Module) -> tuple[str, dict]:
    """``(arch, config)`` describing how to rebuild ``model`` (for :func:`save`)."""
    if isinstance(model, GuidedSR):
        name, cfg = model.architecture
        return name, dict(cfg)
    found = find_architecture(model)
    if found is not None and found[1].config_of is not None:
        return found[0], dict(found[1].config_of(model))
    return "unknown", {}


# ---------------------------------------------------------------------------------
# from a file's tensors to an architecture
def convert_checkpoint(sd: Mapping[str, Tensor], meta: Mapping[str, str], scale: Optional[int] = None) -> tuple[str, str, dict, dict, dict]:
    """``(layout name, arch, config, state_dict, ignored)``: gradguide's own metadata, or
    the registered layout that matches (:func:`gradguide.layouts.convert_state_dict`)."""
    if meta.get("format") == FORMAT:
        try:
            arch = meta["gradguide.arch"]
            cfg = json.loads(meta.get("gradguide.config", "{}"))
        except (KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"gradguide metadata is incomplete or invalid: {exc}") from None
        if not isinstance(cfg, dict):
            raise CheckpointError(f"gradguide metadata: gradguide.config must be a JSON object, got {type(cfg).__name__}")
        return FORMAT, arch, cfg, dict(sd), {}
    layout, arch, cfg, out, ignored = convert_state_dict(sd, meta, scale)
    return layout.name, arch, cfg, out, ignored


def nonfinite_tensors(sd: Mapping[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``sd`` holding NaN or infinity."""
    return [k for k, v in sd.items() if v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all())]


def _bounded_build(path: PathLike, arch: str, cfg: dict, out: Mapping[str, Tensor], strict: bool, what: str) -> nn.Module:
    """Build ``arch`` with ``cfg`` only after its shapes, built on the meta device, match the
    file's tensors: a configuration the tensors do not back is refused before allocation."""
    try:
        probe = build_architecture(arch, cfg, meta_device=True)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build {arch} with {cfg}: {one_line(exc)}") from None
    except Exception:  # noqa: BLE001 - a factory that cannot run on the meta device: check after building
        probe = None
    if probe is not None:
        own = probe.state_dict()
        declared = sum(t.numel() for t in own.values())
        if declared > 2 * sum(t.numel() for t in out.values()) + 1_000_000 and any(k not in out for k in own):
            raise CheckpointError(
                f"{path}: the declared {arch} configuration needs {declared:,} weights but the file holds "
                f"{sum(t.numel() for t in out.values()):,}; refused"
            )
        match_keys(own, out, strict=strict, what=what)
        del probe, own
    try:
        return build_architecture(arch, cfg)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build {arch} with {cfg}: {one_line(exc)}") from None


# ---------------------------------------------------------------------------------
# public API
def load_checkpoint(
    path: PathLike, *, model: Optional[nn.Module] = None, strict: bool = True, scale: Optional[int] = None
) -> LoadedCheckpoint:
    """Read ``path``, detect its layout, build (or fill ``model``) and report every key.

    With ``strict`` (default) any missing or unexpected key raises :class:`CheckpointError`
    naming them; otherwise they are listed in the report.
    """
    path = resolve_checkpoint(path)  # a bundled model's name ("default") -> its file
    sd, meta, container = read_state_dict(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layout, arch, cfg, out, ignored = convert_checkpoint(sd, meta, scale)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    for w in caught:  # re-emit, naming the file
        warnings.warn(str(w.message).replace("checkpoint:", f"{path}:", 1), w.category, stacklevel=2)
    bad = nonfinite_tensors(out)
    if bad:
        warnings.warn(f"{path}: non-finite weights (NaN or inf) in {key_names(bad, 4)}", RuntimeWarning, stacklevel=2)
    what = f"{path}: {layout} -> {arch}"
    if model is None:
        model = _bounded_build(path, arch, cfg, out, strict, what)
    report = LoadReport(str(path), layout, arch, cfg, ignored=ignored, container=container, nonfinite=bad)
    report.loaded, report.missing, report.unexpected = load_matching(model, out, strict=strict, what=what)
    model.eval()
    return LoadedCheckpoint(model, report)


def load(path: PathLike, *, model: Optional[nn.Module] = None, strict: bool = True, scale: Optional[int] = None) -> nn.Module:
    """Load a generator from any supported checkpoint (see the module docstring), or a
    model bundled with gradguide by name: ``load("default")`` (:mod:`gradguide.bundled`).

    Returns the model in eval mode on the CPU; a guided model's forward returns
    :class:`~gradguide.types.SROutput`, a plain backbone's a tensor.
    """
    return load_checkpoint(path, model=model, strict=strict, scale=scale).model


def save(model: nn.Module, path: PathLike, *, metadata: Optional[dict] = None) -> Path:
    """Write ``model`` as gradguide safetensors (atomic: temp file, fsync, rename).

    The metadata records the architecture and its hyperparameters so :func:`load` can
    rebuild it; extra ``metadata`` values are stored as strings.
    """
    arch, cfg = architecture_of(model)
    meta = {"format": FORMAT, "gradguide.arch": arch, "gradguide.config": json.dumps(cfg, sort_keys=True)}
    scale = getattr(model, "scale", None)
    if scale is not None:
        meta["scale"] = str(int(scale))
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = canonical_safetensors(save_bytes(tensors, metadata=meta))
    return atomic_write(p, lambda fh: fh.write(data))


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header in one fixed order (``__metadata__``
    first with sorted keys, then tensors in file order), so equal contents give equal
    bytes. (The safetensors library orders metadata from a hash map, which differs
    between processes: a resumed run's files would not match an uninterrupted run's.)"""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered: dict = {}
    if meta is not None:
        ordered["__metadata__"] = {k: meta[k] for k in sorted(meta)}
    for k in sorted(header, key=lambda k: (header[k]["data_offsets"][0], k)):
        ordered[k] = header[k]
    raw = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n :]
