"""``wrap(model)``: gradient guidance for any SR network, through removable hooks.

The wrapped model keeps its own module names and weights. Forward hooks (by module
name, from a :class:`~gradguide.spec.GuidanceSpec`) collect the tap features; the
gradient branch reads them with M(LR); the fusion then either

* ``placement == "hr"`` (``fusion="paper"``): replaces the backbone's final
  reconstruction layer by a parameter-free slot that calls the fusion, or
* ``placement == "lr"`` (``fusion="lr"``): adds the fused branch features to the
  backbone's LR feature before upsampling, leaving every backbone layer in place.

Whatever the backbone does after its final layer (mean shift, crop...) still runs.
:meth:`GuidedSR.unwrap` removes every hook and restores the replaced layer.

Backbones that pad their input (e.g. SwinIR, to a multiple of its window) produce
taps larger than the LR input: taps are cropped to the LR size (padding is assumed at
the bottom/right, as every reference implementation does) and the branch features are
zero-padded to the size of the backbone feature they are fused with.

:func:`wrap` records in ``GuidedSR.config`` how to rebuild the model (backbone registry
name and config, spec, fusion, block names...), so :func:`gradguide.save` /
:func:`gradguide.load` round-trip wrapped models of registered backbones
(:func:`rebuild`, registered as the ``"guided"`` architecture).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Optional, Union

import torch.nn.functional as F
from torch import Tensor, nn

from .errors import CheckpointError, SpecError
from .layouts import convert_state_dict, load_matching
from .nn.blocks import BlockFactory, block_factory
from .nn.branch import GradientBranch
from .nn.fusion import FUSIONS
from .ops import gradient_map, symmetric_pad
from .plugins import find_architecture, registries
from .registry import Architecture
from .spec import GuidanceSpec
from .types import SROutput, as_output

__all__ = [
    "GuidedSR",
    "wrap",
    "unwrap",
    "spec_for",
    "entry_for",
    "rebuild",
    "BackboneLoadReport",
    "DEFAULT_LR_BRANCH_WIDTH",
    "ARCHITECTURE",
]

#: default gradient-branch width of the efficient ``"lr"`` fusion
DEFAULT_LR_BRANCH_WIDTH = FUSIONS["lr"].width


class _FusionSlot(nn.Module):
    """Stands where the backbone's final layer was; calls the guided model's fusion.

    Holds no parameters, so the backbone's state dict simply lacks the replaced layer.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], replaced: str) -> None:
        super().__init__()
        object.__setattr__(self, "_fn", fn)
        self.replaced = replaced

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(x)

    def extra_repr(self) -> str:
        return f"replaces={self.replaced!r}"


def _fit(t: Tensor, size: "tuple[int, int] | torch.Size") -> Tensor:
    """Crop (bottom/right) or zero-pad (bottom/right) ``t (B, C, H, W)`` to spatial ``size``."""
    h, w = int(size[-2]), int(size[-1])
    th, tw = t.shape[-2:]
    if (th, tw) == (h, w):
        return t
    t = t[..., : min(th, h), : min(tw, w)]
    if th < h or tw < w:
        t = F.pad(t, (0, max(0, w - tw), 0, max(0, h - th)))
    return t


@dataclass
class BackboneLoadReport:
    """What :meth:`GuidedSR.load_backbone_state_dict` did with each key."""

    loaded: int = 0
    layout: str = "backbone"
    ignored: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected


def _first_tensor(out: Any, what: str = "tapped module") -> Tensor:
    """The tensor a module returned (its first, for a tuple): :func:`gradguide.types.as_output`'s ``sr``."""
    try:
        return as_output(out, what).sr
    except TypeError as exc:
        raise SpecError(str(exc)) from None


class GuidedSR(nn.Module):
    """A backbone with a gradient branch and a fusion block attached.

    ``forward(lr (B, C, H, W)) -> SROutput(sr (B, C, sH, sW), grad (B, C, sH, sW),
    lr_grad (B, C, H, W))``.

    Submodules: ``backbone`` (the wrapped model, minus a replaced layer), ``branch``
    (:class:`~gradguide.nn.branch.GradientBranch`), ``fusion``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        spec: GuidanceSpec,
        branch: GradientBranch,
        fusion: nn.Module,
        *,
        grad_padding: str = "zeros",
        edge_pad: int = 0,
        config: Optional[dict] = None,
        architecture: Optional[tuple[str, dict]] = None,
    ) -> None:
        super().__init__()
        if int(edge_pad) < 0:
            raise SpecError(f"edge_pad must be >= 0, got {edge_pad}")
        spec.validate(backbone)
        placement = getattr(fusion, "placement", None)
        if placement not in ("hr", "lr"):
            raise SpecError(f"fusion {type(fusion).__name__} must declare placement 'hr' or 'lr'")
        if placement == "lr" and not spec.lr_feature:
            raise SpecError(
                f"fusion='lr' needs spec.lr_feature (the LR feature before upsampling) for "
                f"{type(backbone).__name__}"
            )
        self.backbone = backbone
        self.branch = branch
        self.fusion = fusion
        self.spec = spec
        self.scale = spec.scale
        self.grad_padding = grad_padding
        #: LR px of mirror (:func:`gradguide.ops.symmetric_pad`) added on every side of the
        #: input before the network, and cropped off every output after it
        self.edge_pad = int(edge_pad)
        #: how :func:`wrap` built this model (one schema: see :func:`wrap`)
        self.config: dict = dict(config or {})
        #: the registry architecture and config :func:`gradguide.save` records: a named
        #: generator's (``("spsr", {...})``), else ``("guided", self.config)``
        self.architecture: tuple[str, dict] = architecture or ("guided", self.config)
        if placement == "hr" and not spec.replace:
            raise SpecError(
                f"fusion='paper' needs spec.replace (the final reconstruction layer) for "
                f"{type(backbone).__name__}; this backbone supports fusion={spec.fusions()}"
            )
        self._replaced: dict[str, nn.Module] = {}
        self._handles: list[Any] = []
        self._ctx: Optional[dict] = None
        self._attach()

    # -- attaching -----------------------------------------------------------------
    def _attach(self) -> None:
        spec = self.spec
        for i, tap in enumerate(spec.taps):
            mod = self.backbone.get_submodule(tap.name)
            self._handles.append(mod.register_forward_hook(partial(self._store, i)))
        if self.fusion.placement == "hr":
            if spec.hr_feature:
                mod = self.backbone.get_submodule(spec.hr_feature)
                self._handles.append(mod.register_forward_hook(partial(self._store, "hr")))
            original = self.backbone.get_submodule(spec.replace)
            self._replaced[spec.replace] = original
            _set_submodule(self.backbone, spec.replace, _FusionSlot(self._fuse_hr, spec.replace))
        else:
            mod = self.backbone.get_submodule(spec.lr_feature)
            self._handles.append(mod.register_forward_hook(self._fuse_lr))

    def unwrap(self) -> nn.Module:
        """Remove every hook, put the replaced layer back and return the backbone."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for name, original in self._replaced.items():
            try:
                ref = next(self.backbone.parameters())
                original.to(device=ref.device)
            except StopIteration:
                pass
            _set_submodule(self.backbone, name, original)
        self._replaced.clear()
        return self.backbone

    # -- hooks ----------------------------------------------------------------------
    def _store(self, key: Union[int, str], module: nn.Module, args: Any, out: Any) -> None:
        if self._ctx is not None:
            self._ctx[key] = _first_tensor(out)

    def _taps(self) -> list[Tensor]:
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError("GuidedSR: the backbone's hooks ran outside GuidedSR.forward")
        missing = [t.name for i, t in enumerate(self.spec.taps) if i not in ctx]
        if missing:
            raise SpecError(
                f"taps {missing} did not run before the fusion point; check the spec's module names and order"
            )
        size = ctx["lr_grad"].shape[-2:]
        taps = []
        for i, t in enumerate(self.spec.taps):
            f = ctx[i]
            if f.ndim != 4 or f.shape[-2] < size[-2] or f.shape[-1] < size[-1]:
                raise SpecError(
                    f"tap {t.name!r} gave shape {tuple(f.shape)}; expected (B, {t.channels}, H, W) at least "
                    f"the LR size {tuple(size)}"
                )
            taps.append(_fit(f, size))
        return taps

    def _fuse_hr(self, h: Tensor) -> Tensor:
        ctx = self._ctx
        feats, grad = self.branch(ctx["lr_grad"], self._taps())
        ctx["grad"] = grad
        hr = ctx.get("hr", h)
        return self.fusion(_fit(feats, hr.shape), hr)

    def _fuse_lr(self, module: nn.Module, args: Any, out: Any) -> Any:
        ctx = self._ctx
        if ctx is None:
            return None
        f = _first_tensor(out)
        lr_feats = self.branch.forward_lr(ctx["lr_grad"], self._taps())
        ctx["grad"] = self.branch.forward_hr(lr_feats)[1]
        fused = self.fusion(_fit(lr_feats, f.shape), f)
        if isinstance(out, Tensor):
            return fused
        return (fused, *out[1:])

    # -- running --------------------------------------------------------------------
    def forward(self, x: Tensor) -> SROutput:
        if x.ndim != 4:
            raise ValueError(f"GuidedSR expects (B, C, H, W) input, got shape {tuple(x.shape)}")
        p = min(self.edge_pad, x.shape[-2], x.shape[-1])  # an input smaller than the pad mirrors all it has
        if not p:
            return self._forward(x)
        out, ps = self._forward(symmetric_pad(x, p)), p * self.scale
        return SROutput(out.sr[..., ps:-ps, ps:-ps], out.grad[..., ps:-ps, ps:-ps], out.lr_grad[..., p:-p, p:-p])

    def _forward(self, x: Tensor) -> SROutput:
        lr_grad = gradient_map(x, padding=self.grad_padding)
        self._ctx = {"lr_grad": lr_grad}
        try:
            sr = self.backbone(x)
            grad = self._ctx.get("grad")
        finally:
            self._ctx = None
        if grad is None:
            raise SpecError("GuidedSR: the fusion point never ran; check spec.replace / spec.lr_feature")
        return SROutput(_first_tensor(sr, "backbone"), grad, lr_grad)

    def warmup_modules(self) -> list[nn.Module]:
        """Modules that train during the branch warm-up (the fusion block)."""
        return list(self.fusion.warmup_modules())

    @property
    def replaced_layers(self) -> list[str]:
        """Backbone module names replaced by the fusion (their keys are not in the state dict)."""
        return list(self._replaced)

    def load_backbone_state_dict(self, state_dict: dict, *, strict: bool = True) -> BackboneLoadReport:
        """Load the wrapped backbone's own (e.g. pretrained) weights.

        ``state_dict`` uses the backbone's module names, or any layout gradguide knows
        (``gradguide.checkpoints``: e.g. ESRGAN's old names), converted on the fly. Keys
        of the layer replaced by the fusion are ignored, with the reason in the report;
        with ``strict`` any other missing or unexpected key raises
        :class:`~gradguide.errors.CheckpointError` naming them.
        """
        own = self.backbone.state_dict()
        sd = dict(state_dict)
        report = BackboneLoadReport()
        if not any(k in own for k in sd):
            try:
                layout, _, _, sd, ignored = convert_state_dict(sd, {}, self.scale)
            except CheckpointError:
                pass
            else:
                report.layout = layout.name
                report.ignored.update(ignored)
        for name in self._replaced:
            for k in [k for k in sd if k.startswith(name + ".")]:
                report.ignored[k] = f"{name} is replaced by the fusion block"
                del sd[k]
        report.loaded, report.missing, report.unexpected = load_matching(
            self.backbone, sd, strict=strict, what=f"backbone state dict ({report.layout})"
        )
        return report


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def entry_for(model: nn.Module) -> Optional[tuple[str, Any]]:
    """``(name, Architecture)`` of the registered backbone covering ``model``'s class, or None."""
    found = find_architecture(model)
    return found if found is not None and found[1].is_backbone else None


def spec_for(model: nn.Module) -> GuidanceSpec:
    """The registered :class:`GuidanceSpec` for ``model``'s class (via the plugin registry)."""
    found = entry_for(model)
    if found is not None:
        return found[1].spec(model)
    known = ", ".join(registries().backbones.names()) or "(none)"
    raise SpecError(
        f"no registered backbone covers {type(model).__module__}.{type(model).__qualname__} "
        f"(registered: {known}); pass spec=GuidanceSpec(taps=[Tap(name, channels), ...], "
        f"replace='<final conv>', hr_channels=..., scale=..., lr_feature='<LR feature module>', "
        f"lr_channels=...) naming its modules"
    )


def wrap(
    model: nn.Module,
    spec: Optional[GuidanceSpec] = None,
    *,
    fusion: Optional[str] = None,
    branch_width: Optional[int] = None,
    branch_block: "str | BlockFactory | None" = None,
    fusion_block: "str | BlockFactory | None" = None,
    upsampler: str = "nearest",
    grad_padding: str = "zeros",
    edge_pad: int = 0,
    record_as: Optional[tuple[str, dict]] = None,
) -> GuidedSR:
    """Attach gradient guidance to ``model`` (modified in place; see :meth:`GuidedSR.unwrap`).

    Args:
        model: any SR network mapping ``(B, C, H, W)`` to ``(B, C, sH, sW)``.
        spec: tap points etc.; looked up in the backbone registry when omitted.
        fusion: ``"paper"`` (SPSR's HR fusion, exact) or ``"lr"`` (efficient: fuses at LR
            resolution before upsampling; about 1.1x the backbone's FLOPs for RRDBNet-23).
            Default: ``"paper"`` where the spec allows it (it names ``replace``), else ``"lr"``.
        branch_width: gradient-branch width (default: the first tap's channels for
            ``"paper"``, :data:`DEFAULT_LR_BRANCH_WIDTH` for ``"lr"``).
        branch_block / fusion_block: block type for the gradient blocks and the fusion
            block, by name (``"rrdb"``, ``"rdb"``, ``"res"``) or as a
            ``factory(channels) -> module``; defaults ``"rrdb"`` for ``"paper"``,
            ``"rdb"`` for ``"lr"``.
        upsampler: ``"nearest"`` or ``"pixelshuffle"`` for the ``"paper"`` branch's HR
            part (the ``"lr"`` branch always uses a pixel-shuffle gradient head).
        grad_padding: padding of the gradient operator M (``"zeros"`` as in SPSR).
        edge_pad: LR px of mirror padding (:func:`gradguide.ops.symmetric_pad`, the
            mirror MATLAB's imresize assumed when it made the LR) added around the input
            and cropped off the outputs, so that the image's edge meets mirrored content
            instead of the convolutions' zeros. 0 (default): none, the network as trained.
        record_as: ``(architecture, config)`` to record for :func:`gradguide.save` when this
            is a registered generator (``create_spsr`` records ``"spsr"``); default
            ``("guided", config)``, rebuilt by :func:`rebuild`.

    Shapes: ``forward(lr (B, C, H, W)) -> SROutput(sr (B, C, sH, sW), grad (B, C, sH, sW),
    lr_grad (B, C, H, W))``.
    """
    if isinstance(model, GuidedSR) or any(isinstance(m, _FusionSlot) for m in model.modules()):
        raise SpecError("model is already wrapped; call .unwrap() on its GuidedSR first")
    if fusion is not None and fusion not in FUSIONS:
        raise SpecError(f"fusion must be one of {sorted(FUSIONS)}, got {fusion!r}")
    found = entry_for(model)
    if spec is None:
        spec = found[1].spec(model) if found is not None else spec_for(model)  # spec_for raises, naming what to pass
    spec.validate(model)
    if fusion is None:
        fusion = spec.fusions()[0]
    if fusion not in spec.fusions():
        raise SpecError(
            f"fusion={fusion!r} is not possible for {type(model).__name__} with this spec "
            f"(needs {'replace' if FUSIONS[fusion].placement == 'hr' else 'lr_feature'}); possible: {spec.fusions()}"
        )
    kind = FUSIONS[fusion]
    bblock, bname = block_factory(branch_block, kind.block)
    fblock, fname = block_factory(fusion_block, kind.block)
    width = branch_width or kind.default_width(spec)
    branch = kind.branch.from_spec(spec, width, bblock, upsampler)
    fuse = kind.fusion.from_spec(spec, width, fblock)
    backbone_name, backbone_config = None, None
    if found is not None:
        backbone_name = found[0]
        if found[1].config_of is not None:
            backbone_config = dict(found[1].config_of(model))
    config = {
        "backbone": backbone_name,
        "backbone_config": backbone_config,
        "spec": spec.to_dict(),
        "fusion": fusion,
        "branch_width": width,
        "branch_block": bname,
        "fusion_block": fname,
        "upsampler": upsampler,
        "grad_padding": grad_padding,
    }
    if edge_pad:  # recorded only where used: every earlier checkpoint's config stays as it was
        config["edge_pad"] = int(edge_pad)
    return GuidedSR(model, spec, branch, fuse, grad_padding=grad_padding, edge_pad=edge_pad, config=config, architecture=record_as)


def rebuild(**config: Any) -> GuidedSR:
    """Rebuild a wrapped model from the ``config`` :func:`wrap` recorded (the ``"guided"``
    architecture of :mod:`gradguide.checkpoints`); weights are not loaded."""
    name = config.get("backbone")
    if not name:
        raise CheckpointError(
            "guided model of an unregistered backbone: rebuild it with wrap(model, spec) and pass "
            "model= to gradguide.load"
        )
    for key in ("branch_block", "fusion_block"):
        if config.get(key) == "custom":
            raise CheckpointError(
                f"guided model built with a custom {key} factory: rebuild it with wrap(...) and pass "
                f"model= to gradguide.load"
            )
    regs = registries()
    if name not in regs.backbones:
        known = ", ".join(regs.backbones.names()) or "(none)"
        raise CheckpointError(f"backbone {name!r} is not registered (is its plugin installed?); registered: {known}")
    entry = regs.backbones.get(name)
    if config.get("backbone_config") is None:
        raise CheckpointError(f"backbone {name!r} has no config_of, so its hyperparameters were not saved")
    backbone = entry.factory(**config["backbone_config"])
    spec = GuidanceSpec.from_dict(config["spec"]) if config.get("spec") else entry.spec(backbone)
    return wrap(
        backbone, spec, fusion=config.get("fusion"), branch_width=config.get("branch_width"),
        branch_block=config.get("branch_block"), fusion_block=config.get("fusion_block"),
        upsampler=config.get("upsampler", "nearest"), grad_padding=config.get("grad_padding", "zeros"),
        edge_pad=int(config.get("edge_pad", 0)),
    )


def unwrap(model: GuidedSR) -> nn.Module:
    """Functional twin of :meth:`GuidedSR.unwrap`."""
    if not isinstance(model, GuidedSR):
        raise TypeError(f"unwrap expects a GuidedSR, got {type(model).__name__}")
    return model.unwrap()


#: models made by :func:`wrap` of a registered backbone, rebuilt from their recorded config
ARCHITECTURE = Architecture(
    name="guided",
    factory=rebuild,
    description="any registered backbone wrapped by gradguide.wrap (rebuilt from its recorded config)",
    scales=(),
    scale_arg=None,
)
