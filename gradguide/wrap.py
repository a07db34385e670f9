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
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional, Union

from torch import Tensor, nn

from .errors import SpecError
from .nn.branch import GradientBranch
from .nn.fusion import FUSIONS, LRFusion, PaperFusion
from .ops import gradient_map
from .spec import GuidanceSpec
from .types import SROutput

__all__ = ["GuidedSR", "wrap", "unwrap", "spec_for"]


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


def _first_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise SpecError(f"tapped module returned {type(out).__name__}, expected a Tensor")


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
        config: Optional[dict] = None,
    ) -> None:
        super().__init__()
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
        #: how this model was built (saved in checkpoint metadata)
        self.config: dict = dict(config or {})
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
        return [ctx[i] for i in range(len(self.spec.taps))]

    def _fuse_hr(self, h: Tensor) -> Tensor:
        ctx = self._ctx
        feats, grad = self.branch(ctx["lr_grad"], self._taps())
        ctx["grad"] = grad
        hr = ctx.get("hr", h)
        return self.fusion(feats, hr)

    def _fuse_lr(self, module: nn.Module, args: Any, out: Any) -> Any:
        ctx = self._ctx
        if ctx is None:
            return None
        f = _first_tensor(out)
        lr_feats = self.branch.forward_lr(ctx["lr_grad"], self._taps())
        ctx["grad"] = self.branch.forward_hr(lr_feats)[1]
        fused = self.fusion(lr_feats, f)
        if isinstance(out, Tensor):
            return fused
        return (fused, *out[1:])

    # -- running --------------------------------------------------------------------
    def forward(self, x: Tensor) -> SROutput:
        if x.ndim != 4:
            raise ValueError(f"GuidedSR expects (B, C, H, W) input, got shape {tuple(x.shape)}")
        lr_grad = gradient_map(x, padding=self.grad_padding)
        self._ctx = {"lr_grad": lr_grad}
        try:
            sr = self.backbone(x)
            grad = self._ctx.get("grad")
        finally:
            self._ctx = None
        if grad is None:
            raise SpecError("GuidedSR: the fusion point never ran; check spec.replace / spec.lr_feature")
        return SROutput(_first_tensor(sr), grad, lr_grad)

    def warmup_modules(self) -> list[nn.Module]:
        """Modules that train during the branch warm-up (the fusion block)."""
        return list(self.fusion.warmup_modules())


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def spec_for(model: nn.Module) -> GuidanceSpec:
    """The registered :class:`GuidanceSpec` for ``model``'s class (via the plugin registry)."""
    from .plugins import registries

    regs = registries()
    for _, entry in regs.backbones.items():
        if isinstance(model, entry.classes):
            return entry.spec(model)
    known = ", ".join(regs.backbones.names()) or "(none)"
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
    fusion: str = "paper",
    branch_width: Optional[int] = None,
    branch_block: Optional[Callable[[int], nn.Module]] = None,
    fusion_block: Optional[Callable[[int], nn.Module]] = None,
    upsampler: str = "nearest",
    grad_padding: str = "zeros",
) -> GuidedSR:
    """Attach gradient guidance to ``model`` (modified in place; see :meth:`GuidedSR.unwrap`).

    Args:
        model: any SR network mapping ``(B, C, H, W)`` to ``(B, C, sH, sW)``.
        spec: tap points etc.; looked up in the backbone registry when omitted.
        fusion: ``"paper"`` (HR fusion, SPSR-exact) or ``"lr"`` (efficient, LR fusion).
        branch_width: gradient-branch width (default: the first tap's channels).
        branch_block / fusion_block: ``factory(channels) -> module`` for the gradient
            blocks and the fusion block (defaults: RRDB for "paper", RDB for "lr").
        upsampler: ``"nearest"`` or ``"pixelshuffle"`` for the branch.
    """
    if isinstance(model, GuidedSR):
        raise SpecError("model is already wrapped; call .unwrap() first")
    spec = spec or spec_for(model)
    if fusion not in FUSIONS:
        raise SpecError(f"fusion must be one of {sorted(FUSIONS)}, got {fusion!r}")
    width = branch_width or spec.taps[0].channels
    if fusion == "paper":
        branch = GradientBranch(
            [t.channels for t in spec.taps], in_channels=spec.in_channels, out_channels=spec.out_channels,
            width=width, scale=spec.scale, block=branch_block, upsampler=upsampler,
        )
        fuse: nn.Module = PaperFusion(spec.hr_channels, width, spec.out_channels, block=fusion_block)
    else:
        branch = GradientBranch(
            [t.channels for t in spec.taps], in_channels=spec.in_channels, out_channels=spec.out_channels,
            width=width, scale=spec.scale, block=branch_block, upsampler=upsampler, hr_head=False,
        )
        fuse = LRFusion(spec.lr_channels or width, width, block=fusion_block)
    config = {"fusion": fusion, "branch_width": width, "upsampler": upsampler, "grad_padding": grad_padding}
    return GuidedSR(model, spec, branch, fuse, grad_padding=grad_padding, config=config)


def unwrap(model: GuidedSR) -> nn.Module:
    """Functional twin of :meth:`GuidedSR.unwrap`."""
    if not isinstance(model, GuidedSR):
        raise TypeError(f"unwrap expects a GuidedSR, got {type(model).__name__}")
    return model.unwrap()
