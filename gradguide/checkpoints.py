"""Reading and writing generator checkpoints.

:func:`load` reads ``.safetensors`` and ``.pth``/``.pt``/``.ckpt`` files (always
``torch.load(..., weights_only=True)``), unwraps the usual containers (``params_ema``,
``params``, ``state_dict``, DataParallel's ``module.`` prefix), detects the key layout,
converts it to gradguide's own names, builds the architecture with hyperparameters
inferred from tensor shapes and loads the weights strictly: every key is either
loaded, or listed in the report as ignored with a reason. Nothing is dropped silently.

Layouts (built-ins; plugins add more with ``gradguide_checkpoint_layouts``):

* ``gradguide``       -- gradguide safetensors with metadata (written by :func:`save`)
* ``spsr-official``   -- the official SPSR generator (``model.*``, ``b_*``, ``f_*``)
* ``esrgan-old``      -- ESRGAN's original layout (RRDB_ESRGAN_x4.pth, RRDB_PSNR_x4.pth)
* ``mmsr-rrdbnet``    -- the mmsr/"new arch" ESRGAN names (``RRDB_trunk``, ``trunk_conv``)
* ``basicsr-rrdbnet`` -- BasicSR / Real-ESRGAN (``conv_first``, ``body.N.rdb1.conv1``)
"""
from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .registry import CheckpointLayout

__all__ = [
    "load",
    "save",
    "load_checkpoint",
    "read_state_dict",
    "LoadReport",
    "LoadedCheckpoint",
    "builtin_layouts",
    "detect_layout",
    "convert_state_dict",
    "build_architecture",
    "register_architecture",
    "architecture_of",
    "FORMAT",
    "spsr_to_official",
    "load_matching",
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

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def summary(self) -> str:
        parts = [f"{self.loaded} tensors loaded"]
        if self.ignored:
            parts.append(f"{len(self.ignored)} ignored")
        if self.missing:
            parts.append(f"missing: {_names(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected: {_names(self.unexpected)}")
        return "; ".join(parts)


def _names(keys: list[str], n: int = 6) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


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
    from .fileio import check_input_file

    p = Path(path)
    check_input_file(p, CheckpointError)  # missing, broken link, link loop, folder: one line each
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: empty file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None
    is_torch = head.startswith(b"PK") or head.startswith(b"\x80")
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
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: not a readable safetensors file (truncated or corrupt?): {_one_line(exc)}") from None
    return sd, meta


def _read_torch(p: Path) -> tuple[dict[str, Tensor], dict[str, str], Optional[str]]:
    import pickle

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{p}: refused: {_pickle_refusal(exc)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint (truncated or corrupt?): {_one_line(exc)}") from None
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


def _one_line(exc: BaseException) -> str:
    from .fileio import one_line

    return one_line(exc)


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
# architectures: name -> builder(config) -> nn.Module
_ARCHS: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str, builder: Callable[..., nn.Module]) -> None:
    if name in _ARCHS:
        raise ValueError(f"architecture {name!r} is already registered")
    _ARCHS[name] = builder


def _build_spsr(**cfg: Any) -> nn.Module:
    from .spsr import create_spsr

    return create_spsr(**cfg)


register_architecture("spsr", _build_spsr)


def _build_guided(**cfg: Any) -> nn.Module:
    """A model made by :func:`gradguide.wrap` (its recorded config; see :func:`gradguide.wrap.rebuild`)."""
    from .wrap import rebuild

    return rebuild(**cfg)


register_architecture("guided", _build_guided)


def build_architecture(arch: str, config: dict) -> nn.Module:
    """Build ``arch`` with ``config``: a registered architecture, or a backbone from the
    plugin registry (``gradguide backbones``)."""
    if arch in _ARCHS:
        return _ARCHS[arch](**config)
    from .plugins import registries

    regs = registries()
    if arch in regs.backbones:
        return regs.backbones.get(arch).factory(**config)
    known = sorted(set(_ARCHS) | set(regs.backbones.names()))
    raise CheckpointError(f"unknown architecture {arch!r}; known: {', '.join(known)}")


def architecture_of(model: nn.Module) -> tuple[str, dict]:
    """``(arch, config)`` describing how to rebuild ``model`` (for :func:`save`)."""
    from .wrap import GuidedSR

    if isinstance(model, GuidedSR):
        arch = model.config.get("arch")
        if arch is None and {"nf", "nb"} <= set(model.config):
            arch = "spsr"
        if arch == "spsr":
            return "spsr", {k: model.config[k] for k in ("nf", "nb", "gc", "scale", "in_nc", "out_nc")}
        if arch is not None:
            return arch, {k: v for k, v in model.config.items() if k != "arch"}
        return "guided", dict(model.config)
    from .plugins import registries

    for name, entry in registries().backbones.items():
        if type(model) in entry.classes and entry.config_of is not None:
            return name, entry.config_of(model)
    return "unknown", {}


# ---------------------------------------------------------------------------------
# layouts
_RDB = r"(?:RDB|rdb)([123])\.conv([1-5])"


def _rrdb_shapes(sd: dict[str, Tensor], first: str, block_prefix: str) -> tuple[int, int, int]:
    """``(in_nc, nf, nb, gc)`` from the first conv and the body blocks' shapes."""
    nf = sd[first].shape[0]
    in_nc = sd[first].shape[1]
    pat = re.compile(re.escape(block_prefix) + r"(\d+)\.")
    nb = len({int(m.group(1)) for k in sd if (m := pat.match(k))})
    return in_nc, nf, nb


def _gc(sd: dict[str, Tensor], key: str) -> int:
    return int(sd[key].shape[0]) if key in sd else 32


def _scale_from_ups(n_up: int, meta: dict, scale: Optional[int], path_hint: str) -> int:
    if scale is not None:
        return int(scale)
    if "scale" in meta:
        return int(meta["scale"])
    if n_up == 1:
        warnings.warn(
            f"{path_hint}: one upsampling stage: x2 or x3 cannot be told apart from the shapes; "
            "assuming x2 (pass scale=3 to load an x3 model)",
            stacklevel=3,
        )
        return 2
    return 2**n_up


def _map_rrdb_body(k: str, src_prefix: str, dst_prefix: str, nb: int, conv_suffix: str) -> Optional[str]:
    m = re.match(re.escape(src_prefix) + r"(\d+)\." + _RDB + re.escape(conv_suffix) + r"(weight|bias)$", k)
    if m and int(m.group(1)) < nb:
        i, r, c, p = m.groups()
        return f"{dst_prefix}{i}.rdb{r}.conv{c}.{p}"
    return None


def _old_seq_indices(sd: dict[str, Tensor], prefix: str) -> list[int]:
    """Indices of conv layers ``{prefix}{i}.weight`` in a flattened Sequential."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    return sorted(int(m.group(1)) for k in sd if (m := pat.match(k)))


def _convert_old_trunk(sd: dict, meta: dict, scale: Optional[int], spsr: bool) -> tuple[str, dict, dict, dict]:
    """ESRGAN old layout (``model.0``, ``model.1.sub.N``, upconvs, HR conv(s))."""
    in_nc, nf, nb1 = _rrdb_shapes(sd, "model.0.weight", "model.1.sub.")
    nb = nb1 - 1  # the last entry of model.1.sub is the LR conv
    gc = _gc(sd, "model.1.sub.0.RDB1.conv1.0.weight")
    top = [i for i in _old_seq_indices(sd, "model.") if i >= 2]
    out: dict[str, Tensor] = {}
    ignored: dict[str, str] = {}
    # model.2.. = [Upsample, conv, act] * n_up, HR conv, act, (last conv)
    n_up = (len(top) - (1 if spsr else 2))
    if n_up < 1:
        raise CheckpointError("old-layout trunk: could not find the upsampling convs")
    s = _scale_from_ups(n_up, meta, scale, "checkpoint")
    names = [f"conv_up{u + 1}" for u in range(n_up)] + ["conv_hr"] + ([] if spsr else ["conv_last"])
    idx_name = dict(zip(top, names))
    for k, v in sd.items():
        m = re.match(r"model\.(\d+)\.(weight|bias)$", k)
        if k.startswith("model.1.sub."):
            d = _map_rrdb_body(k, "model.1.sub.", "body.", nb, ".0.")
            if d is None and re.match(rf"model\.1\.sub\.{nb}\.(weight|bias)$", k):
                d = "conv_body." + k.rsplit(".", 1)[1]
            if d is not None:
                out[d] = v
        elif m and m.group(1) == "0":
            out["conv_first." + m.group(2)] = v
        elif m and int(m.group(1)) in idx_name:
            out[f"{idx_name[int(m.group(1))]}.{m.group(2)}"] = v
    out_nc = sd[f"model.{top[-1]}.weight"].shape[0] if not spsr else None
    cfg = {"in_nc": int(in_nc), "nf": int(nf), "nb": int(nb), "gc": int(gc), "scale": s}
    if out_nc is not None:
        cfg["out_nc"] = int(out_nc)
    return "rrdbnet", cfg, out, ignored


def _detect_esrgan_old(sd: dict, meta: dict) -> bool:
    return "model.0.weight" in sd and "model.1.sub.0.RDB1.conv1.0.weight" in sd and not any(k.startswith("b_fea_conv") for k in sd)


def _convert_esrgan_old(sd: dict, meta: dict, scale: Optional[int] = None) -> tuple[str, dict, dict, dict]:
    arch, cfg, out, ignored = _convert_old_trunk(sd, meta, scale, spsr=False)
    return arch, cfg, out, ignored


def _detect_spsr_official(sd: dict, meta: dict) -> bool:
    return "model.0.weight" in sd and "b_fea_conv.0.weight" in sd and "f_HR_conv1.0.weight" in sd


def _convert_spsr_official(sd: dict, meta: dict, scale: Optional[int] = None) -> tuple[str, dict, dict, dict]:
    trunk = {k: v for k, v in sd.items() if k.startswith("model.")}
    _, cfg, out, ignored = _convert_old_trunk(trunk, meta, scale, spsr=True)
    out = {"backbone." + k: v for k, v in out.items()}
    nb, n_up = cfg["nb"], len([k for k in out if re.match(r"backbone\.conv_up\d+\.weight$", k)])
    cfg["out_nc"] = int(sd["f_HR_conv1.0.weight"].shape[0])
    # branch
    stage_pat = re.compile(r"b_block_(\d+)\." + _RDB + r"\.0\.(weight|bias)$")
    bmod = _old_seq_indices(sd, "b_module.")
    bmod_names = {i: f"branch.up.{u}.conv" for u, i in enumerate(bmod[:n_up])}
    if len(bmod) != n_up + 2:
        raise CheckpointError(f"spsr-official: b_module has {len(bmod)} convs, expected {n_up + 2}")
    bmod_names[bmod[n_up]] = "branch.hr_conv0"
    bmod_names[bmod[n_up + 1]] = "branch.hr_conv1"
    simple = {
        "b_fea_conv.0": "branch.embed",
        "b_LR_conv.0": "branch.lr_conv",
        "conv_w.0": "branch.to_grad",
        "HR_conv1_new.0": "fusion.proj",
        "f_concat.0": "fusion.reduce",
        "f_HR_conv0.0": "fusion.hr_conv0",
        "f_HR_conv1.0": "fusion.hr_conv1",
    }
    hr_idx = max(i for i in _old_seq_indices(sd, "model."))
    for k, v in sd.items():
        if k.startswith("model."):
            continue
        base, _, p = k.rpartition(".")
        if base in simple:
            out[f"{simple[base]}.{p}"] = v
        elif m := stage_pat.match(k):
            s, r, c, p2 = m.groups()
            out[f"branch.stages.{int(s) - 1}.block.rdb{r}.conv{c}.{p2}"] = v
        elif m := re.match(r"b_concat_(\d+)\.0\.(weight|bias)$", k):
            out[f"branch.stages.{int(m.group(1)) - 1}.reduce.{m.group(2)}"] = v
        elif m := re.match(r"f_block\." + _RDB + r"\.0\.(weight|bias)$", k):
            r, c, p2 = m.groups()
            out[f"fusion.block.rdb{r}.conv{c}.{p2}"] = v
        elif m := re.match(r"b_module\.(\d+)\.(weight|bias)$", k):
            if int(m.group(1)) in bmod_names:
                out[f"{bmod_names[int(m.group(1))]}.{m.group(2)}"] = v
        elif m := re.match(r"HR_conv0_new\.0\.(weight|bias)$", k):
            twin = sd.get(f"model.{hr_idx}.{m.group(1)}")
            if twin is None or not torch.equal(twin, v):
                raise CheckpointError(f"spsr-official: {k} differs from model.{hr_idx}.{m.group(1)}, which it should alias")
            ignored[k] = f"alias of model.{hr_idx}.{m.group(1)} (same tensor)"
        elif k in ("get_g_nopadding.weight_h", "get_g_nopadding.weight_v"):
            expect = _official_grad_kernel(k.endswith("_h"))
            if v.shape != expect.shape or not torch.equal(v.float(), expect):
                raise CheckpointError(f"spsr-official: {k} is not the fixed [-1, 0, 1] kernel gradguide implements")
            ignored[k] = "fixed gradient kernel, verified equal to gradguide.ops.gradient_map's"
    n_taps = len({int(m.group(1)) for k in sd if (m := re.match(r"b_concat_(\d+)\.", k))})
    from .spec import even_taps

    if n_taps != len(even_taps(nb)):
        raise CheckpointError(f"spsr-official: {n_taps} branch stages, but nb={nb} implies {len(even_taps(nb))} taps")
    return "spsr", cfg, out, ignored


def _official_grad_kernel(horizontal: bool) -> Tensor:
    k = torch.zeros(1, 1, 3, 3)
    if horizontal:
        k[0, 0, 1, 0], k[0, 0, 1, 2] = -1.0, 1.0
    else:
        k[0, 0, 0, 1], k[0, 0, 2, 1] = -1.0, 1.0
    return k


def _detect_basicsr(sd: dict, meta: dict) -> bool:
    return "conv_first.weight" in sd and "body.0.rdb1.conv1.weight" in sd and meta.get("format") != FORMAT


def _convert_basicsr(sd: dict, meta: dict, scale: Optional[int] = None) -> tuple[str, dict, dict, dict]:
    in_nc, nf, nb = _rrdb_shapes(sd, "conv_first.weight", "body.")
    if in_nc in (12, 48):
        raise CheckpointError(
            "basicsr-rrdbnet: this is BasicSR's pixel-unshuffle x2/x1 variant (conv_first takes "
            f"{in_nc} channels), which gradguide's RRDBNet does not implement"
        )
    n_up = len([k for k in sd if re.match(r"conv_up\d+\.weight$", k)])
    cfg = {
        "in_nc": int(in_nc), "out_nc": int(sd["conv_last.weight"].shape[0]), "nf": int(nf), "nb": int(nb),
        "gc": _gc(sd, "body.0.rdb1.conv1.weight"), "scale": _scale_from_ups(n_up, meta, scale, "checkpoint"),
    }
    return "rrdbnet", cfg, dict(sd), {}


def _detect_mmsr(sd: dict, meta: dict) -> bool:
    return "conv_first.weight" in sd and "RRDB_trunk.0.RDB1.conv1.weight" in sd


def _convert_mmsr(sd: dict, meta: dict, scale: Optional[int] = None) -> tuple[str, dict, dict, dict]:
    in_nc, nf, nb = _rrdb_shapes(sd, "conv_first.weight", "RRDB_trunk.")
    ren = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "upconv3": "conv_up3", "HRconv": "conv_hr"}
    out = {}
    for k, v in sd.items():
        if k.startswith("RRDB_trunk."):
            d = _map_rrdb_body(k, "RRDB_trunk.", "body.", nb, ".")
            if d is None:
                raise CheckpointError(f"mmsr-rrdbnet: unexpected key {k}")
            out[d] = v
        else:
            base, _, p = k.rpartition(".")
            out[f"{ren.get(base, base)}.{p}"] = v
    n_up = len([k for k in out if re.match(r"conv_up\d+\.weight$", k)])
    cfg = {
        "in_nc": int(in_nc), "out_nc": int(sd["conv_last.weight"].shape[0]), "nf": int(nf), "nb": int(nb),
        "gc": _gc(sd, "RRDB_trunk.0.RDB1.conv1.weight"), "scale": _scale_from_ups(n_up, meta, scale, "checkpoint"),
    }
    return "rrdbnet", cfg, out, {}


def _detect_gradguide(sd: dict, meta: dict) -> bool:
    return meta.get("format") == FORMAT


def _convert_gradguide(sd: dict, meta: dict, scale: Optional[int] = None) -> tuple[str, dict, dict, dict]:
    try:
        arch = meta["gradguide.arch"]
        cfg = json.loads(meta.get("gradguide.config", "{}"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"gradguide metadata is incomplete or invalid: {exc}") from None
    return arch, cfg, dict(sd), {}


def builtin_layouts() -> list[CheckpointLayout]:
    return [
        CheckpointLayout("gradguide", _detect_gradguide, _convert_gradguide, 100, "gradguide safetensors with metadata"),
        CheckpointLayout("spsr-official", _detect_spsr_official, _convert_spsr_official, 50, "official SPSR generator"),
        CheckpointLayout("esrgan-old", _detect_esrgan_old, _convert_esrgan_old, 40, "ESRGAN original (model.0, model.1.sub.N)"),
        CheckpointLayout("mmsr-rrdbnet", _detect_mmsr, _convert_mmsr, 30, "mmsr ESRGAN (RRDB_trunk, trunk_conv)"),
        CheckpointLayout("basicsr-rrdbnet", _detect_basicsr, _convert_basicsr, 30, "BasicSR / Real-ESRGAN RRDBNet"),
    ]


def _layouts() -> list[CheckpointLayout]:
    from .plugins import registries

    regs = registries()
    layouts = [e for _, e in regs.layouts.items()]
    if not layouts:  # gradguide itself not installed as a distribution (no entry points)
        layouts = builtin_layouts()
    return sorted(layouts, key=lambda l: -l.priority)


def detect_layout(sd: dict, meta: dict) -> CheckpointLayout:
    for layout in _layouts():
        try:
            if layout.detect(sd, meta):
                return layout
        except Exception:
            continue
    first = ", ".join(list(sd)[:4])
    names = ", ".join(l.name for l in _layouts())
    raise CheckpointError(f"unknown architecture: no known layout ({names}) matches keys like {first}")


def convert_state_dict(sd: dict, meta: dict, scale: Optional[int] = None) -> tuple[CheckpointLayout, str, dict, dict, dict]:
    layout = detect_layout(sd, meta)
    try:
        arch, cfg, out, ignored = layout.convert(sd, meta, scale) if _takes_scale(layout.convert) else layout.convert(sd, meta)
    except CheckpointError:
        raise
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise CheckpointError(f"layout {layout.name}: cannot convert: {type(exc).__name__}: {_one_line(exc)}") from None
    return layout, arch, cfg, out, ignored


def _takes_scale(fn: Callable) -> bool:
    import inspect

    try:
        return "scale" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------
# public API
def load_matching(module: nn.Module, sd: dict[str, Tensor], *, strict: bool, what: str) -> tuple[int, list[str], list[str]]:
    """Load ``sd`` into ``module`` by name; return ``(loaded, missing, unexpected)``.

    A shape mismatch always raises :class:`CheckpointError`; with ``strict`` so do missing
    or unexpected keys. The message starts with ``what`` and names the keys.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{what}: shape mismatch: {_names(bad, 4)}")
    if strict and (missing or unexpected):
        parts = [f"missing: {_names(missing)}" if missing else "", f"unexpected: {_names(unexpected)}" if unexpected else ""]
        raise CheckpointError(f"{what}: {'; '.join(p for p in parts if p)}")
    module.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return sum(1 for k in sd if k in own), missing, unexpected


def load_checkpoint(
    path: PathLike, *, model: Optional[nn.Module] = None, strict: bool = True, scale: Optional[int] = None
) -> LoadedCheckpoint:
    """Read ``path``, detect its layout, build (or fill ``model``) and report every key.

    With ``strict`` (default) any missing or unexpected key raises :class:`CheckpointError`
    naming them; otherwise they are listed in the report.
    """
    sd, meta, container = read_state_dict(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layout, arch, cfg, out, ignored = convert_state_dict(sd, meta, scale)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    for w in caught:  # re-emit, naming the file
        warnings.warn(str(w.message).replace("checkpoint:", f"{path}:", 1), w.category, stacklevel=2)
    if model is None:
        try:
            model = build_architecture(arch, cfg)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot build {arch} with {cfg}: {_one_line(exc)}") from None
    report = LoadReport(str(path), layout.name, arch, cfg, ignored=ignored, container=container)
    report.loaded, report.missing, report.unexpected = load_matching(
        model, out, strict=strict, what=f"{path}: {layout.name} -> {arch}"
    )
    model.eval()
    return LoadedCheckpoint(model, report)


def load(path: PathLike, *, model: Optional[nn.Module] = None, strict: bool = True, scale: Optional[int] = None) -> nn.Module:
    """Load a generator from any supported checkpoint (see the module docstring).

    Returns the model in eval mode on the CPU; a guided model's forward returns
    :class:`~gradguide.types.SROutput`, a plain backbone's a tensor.
    """
    return load_checkpoint(path, model=model, strict=strict, scale=scale).model


def save(model: nn.Module, path: PathLike, *, metadata: Optional[dict] = None) -> Path:
    """Write ``model`` as gradguide safetensors (atomic: temp file, fsync, rename).

    The metadata records the architecture and its hyperparameters so :func:`load` can
    rebuild it; extra ``metadata`` values are stored as strings.
    """
    from safetensors.torch import save as save_bytes

    arch, cfg = architecture_of(model)
    meta = {"format": FORMAT, "gradguide.arch": arch, "gradguide.config": json.dumps(cfg, sort_keys=True)}
    scale = getattr(model, "scale", None)
    if scale is not None:
        meta["scale"] = str(int(scale))
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    from .fileio import atomic_write

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


def spsr_to_official(model: nn.Module) -> dict[str, Tensor]:
    """The state dict of a :func:`~gradguide.spsr.create_spsr` model in the official SPSR
    key layout (the inverse of the ``spsr-official`` layout), e.g. to run it with the
    reference code or to build conformance fixtures."""
    from .wrap import GuidedSR

    if not isinstance(model, GuidedSR) or architecture_of(model)[0] != "spsr":
        raise CheckpointError("spsr_to_official: expects a model built by create_spsr")
    bb = model.backbone
    n_up = len(bb.factors)
    trunk_idx = {f"conv_up{u + 1}": 3 + 3 * u for u in range(n_up)}
    trunk_idx["conv_hr"] = 2 + 3 * n_up
    bmod = {f"branch.up.{u}.conv": 1 + 3 * u for u in range(n_up)}
    bmod["branch.hr_conv0"] = 3 * n_up
    bmod["branch.hr_conv1"] = 3 * n_up + 2
    simple = {
        "branch.embed": "b_fea_conv.0", "branch.lr_conv": "b_LR_conv.0", "branch.to_grad": "conv_w.0",
        "fusion.proj": "HR_conv1_new.0", "fusion.reduce": "f_concat.0", "fusion.hr_conv0": "f_HR_conv0.0",
        "fusion.hr_conv1": "f_HR_conv1.0", "backbone.conv_first": "model.0",
        "backbone.conv_body": f"model.1.sub.{bb.nb}",
    }
    out: dict[str, Tensor] = {}
    for k, v in model.state_dict().items():
        base, _, p = k.rpartition(".")
        if base in simple:
            out[f"{simple[base]}.{p}"] = v
        elif base.startswith("backbone.") and base[len("backbone."):] in trunk_idx:
            i = trunk_idx[base[len("backbone."):]]
            out[f"model.{i}.{p}"] = v
            if base == "backbone.conv_hr":
                out[f"HR_conv0_new.0.{p}"] = v.clone()
        elif base in bmod:
            out[f"b_module.{bmod[base]}.{p}"] = v
        elif m := re.match(r"backbone\.body\.(\d+)\.rdb(\d)\.conv(\d)$", base):
            out[f"model.1.sub.{m.group(1)}.RDB{m.group(2)}.conv{m.group(3)}.0.{p}"] = v
        elif m := re.match(r"branch\.stages\.(\d+)\.block\.rdb(\d)\.conv(\d)$", base):
            out[f"b_block_{int(m.group(1)) + 1}.RDB{m.group(2)}.conv{m.group(3)}.0.{p}"] = v
        elif m := re.match(r"branch\.stages\.(\d+)\.reduce$", base):
            out[f"b_concat_{int(m.group(1)) + 1}.0.{p}"] = v
        elif m := re.match(r"fusion\.block\.rdb(\d)\.conv(\d)$", base):
            out[f"f_block.RDB{m.group(1)}.conv{m.group(2)}.0.{p}"] = v
        else:
            raise CheckpointError(f"spsr_to_official: no official name for {k}")
    out["get_g_nopadding.weight_h"] = _official_grad_kernel(True)
    out["get_g_nopadding.weight_v"] = _official_grad_kernel(False)
    return out
