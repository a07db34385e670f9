"""SPSR objectives (paper Eq. 3-10): functions first, each with a thin module twin.

Every term is a function ``f(input, target, ..., reduction="mean")`` and an
``nn.Module`` holding ``weight`` and ``reduction`` whose ``forward`` returns
``weight * f(...)``:

==================  =====================================  ==============================
registry name       function                               module
==================  =====================================  ==============================
``pixel``           :func:`pixel_loss` (L1/MSE/Charb.)     :class:`PixelLoss`
``perceptual``      :func:`perceptual_loss` (VGG19)        :class:`PerceptualLoss`
``ragan``           :func:`ragan_d_loss`/:func:`ragan_g_loss` :class:`RaGANLoss`
``gradient_pixel``  :func:`gradient_pixel_loss` (Eq. 7)    :class:`GradientPixelLoss`
``branch``          :func:`branch_loss` (L_GB^PixGM)       :class:`BranchLoss`
``spsr``            --                                     :class:`SPSRLoss` (Eq. 10)
==================  =====================================  ==============================

All loss arithmetic is done in float32 (inputs are upcast), and the adversarial
terms use binary cross-entropy *with logits*, so the losses are safe under
``torch.autocast``. Nothing here picks a device or downloads anything: VGG19
weights come from an explicit file or the torch hub cache, never the network.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Literal, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import CheckpointError, GradguideError
from .ops import PADDINGS, gradient_map
from .types import SROutput

__all__ = [
    "Criterion",
    "Reduction",
    "WeightsNotFoundError",
    "pixel_loss",
    "charbonnier_loss",
    "PixelLoss",
    "VGG19_LAYERS",
    "vgg19_weights_path",
    "VGGFeatureExtractor",
    "perceptual_loss",
    "PerceptualLoss",
    "create_perceptual_loss",
    "ragan_d_loss",
    "ragan_g_loss",
    "RaGANLoss",
    "gradient_pixel_loss",
    "GradientPixelLoss",
    "branch_loss",
    "BranchLoss",
    "GeneratorLoss",
    "DiscriminatorLoss",
    "SPSRLoss",
    "builtin_losses",
    "create_loss",
    "list_losses",
]

Criterion = Literal["l1", "mse", "charbonnier"]
Reduction = Literal["mean", "sum", "none"]
CRITERIA: tuple[str, ...] = ("l1", "mse", "charbonnier")
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


class WeightsNotFoundError(GradguideError, FileNotFoundError):
    """Pretrained weights needed by a loss are not on disk (gradguide never downloads)."""


# --------------------------------------------------------------------------- helpers


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value


def _check_pair(a: Tensor, b: Tensor, what: str, a_name: str = "input", b_name: str = "target") -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{what}: {a_name} and {b_name} must be tensors")
    if a.shape != b.shape:
        raise ValueError(f"{what}: {a_name} shape {tuple(a.shape)} != {b_name} shape {tuple(b.shape)}")


def _check_image(x: Tensor, what: str, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what}: {name} must have shape (B, C, H, W), got {shape}")


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_weight(weight: float, what: str) -> float:
    w = float(weight)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"{what}: weight must be a finite number >= 0, got {weight!r}")
    return w


# --------------------------------------------------------------------------- pixel


def charbonnier_loss(input: Tensor, target: Tensor, *, eps: float = 1e-3, reduction: Reduction = "mean") -> Tensor:
    """Charbonnier (smooth L1) distance ``sqrt((x - y)^2 + eps^2) - eps``.

    The constant ``eps`` is subtracted so that identical inputs give exactly 0; the
    gradient is the usual Charbonnier gradient ``(x - y) / sqrt((x - y)^2 + eps^2)``.

    Shapes: ``input`` and ``target`` any equal shape; returns a scalar for
    ``mean``/``sum`` and the elementwise tensor for ``none``.
    """
    _check_pair(input, target, "charbonnier_loss")
    d = input.float() - target.float()
    e = float(eps)
    return _reduce(torch.sqrt(d * d + e * e) - e, reduction)


def pixel_loss(
    input: Tensor,
    target: Tensor,
    *,
    criterion: Criterion = "l1",
    reduction: Reduction = "mean",
    eps: float = 1e-3,
) -> Tensor:
    """Pixelwise distance (Eq. 3 with ``l1``): L1, MSE or Charbonnier.

    Args:
        input, target: tensors of equal shape, e.g. ``(B, C, H, W)`` images.
        criterion: ``"l1"`` (paper), ``"mse"`` or ``"charbonnier"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (elementwise).
        eps: Charbonnier's epsilon (ignored otherwise).
    """
    _check_pair(input, target, "pixel_loss")
    _check_choice(criterion, CRITERIA, "pixel_loss: criterion")
    _check_choice(reduction, REDUCTIONS, "pixel_loss: reduction")
    if criterion == "charbonnier":
        return charbonnier_loss(input, target, eps=eps, reduction=reduction)
    fn = F.l1_loss if criterion == "l1" else F.mse_loss
    return fn(input.float(), target.float(), reduction=reduction)


class PixelLoss(nn.Module):
    """Module twin of :func:`pixel_loss`: ``weight * pixel_loss(input, target)``."""

    def __init__(self, criterion: Criterion = "l1", *, weight: float = 1.0, reduction: Reduction = "mean", eps: float = 1e-3) -> None:
        super().__init__()
        self.criterion = _check_choice(criterion, CRITERIA, "PixelLoss: criterion")
        self.reduction = _check_choice(reduction, REDUCTIONS, "PixelLoss: reduction")
        self.weight = _check_weight(weight, "PixelLoss")
        self.eps = float(eps)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return self.weight * pixel_loss(input, target, criterion=self.criterion, reduction=self.reduction, eps=self.eps)

    def extra_repr(self) -> str:
        return f"criterion={self.criterion!r}, weight={self.weight}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------- perceptual (VGG19)


def _vgg19_layer_names() -> tuple[str, ...]:
    # torchvision's VGG19 "E" config: conv/relu pairs per block, a max-pool closing each block.
    names: list[str] = []
    for block, n_convs in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


#: Names of ``torchvision.models.vgg19().features`` layers, by index
#: (``VGG19_LAYERS.index("conv5_4") == 34``: SPSR/ESRGAN use ``features[:35]``).
VGG19_LAYERS: tuple[str, ...] = _vgg19_layer_names()

#: ImageNet statistics torchvision's VGG19 was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_filename() -> str:
    from torchvision.models import VGG19_Weights

    return os.path.basename(VGG19_Weights.IMAGENET1K_V1.url)  # "vgg19-dcbb9e9d.pth"


def vgg19_weights_path(weights: Union[str, os.PathLike, None] = None) -> Path:
    """Where the VGG19 weights are: ``weights`` if given, else the torch hub cache.

    The cache file is ``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth``
    (``$TORCH_HOME/hub/checkpoints/...``), the file torchvision itself would download.
    Nothing is downloaded here.

    Raises:
        WeightsNotFoundError: the file does not exist; the one-line message says where
            to put it and how to train without the perceptual term instead.
    """
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise WeightsNotFoundError(
                f"VGG19 weights file {str(p)!r} not found (perceptual loss needs torchvision's {_vgg19_filename()})"
            )
        return p
    cached = Path(torch.hub.get_dir()) / "checkpoints" / _vgg19_filename()
    if not cached.is_file():
        raise WeightsNotFoundError(
            f"VGG19 weights for the perceptual loss not found at {str(cached)!r}: copy torchvision's "
            f"{_vgg19_filename()} there (or set TORCH_HOME), or pass its path (weights=..., recipe loss.vgg_weights); "
            "to train without the perceptual term set its weight to 0 or on_missing='drop' (recipe loss.on_missing_vgg)"
        )
    return cached


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG19 feature extractor ``phi_i`` for the perceptual loss (Eq. 4).

    Runs ``torchvision`` VGG19 ``features`` up to and including ``layer`` (default
    ``conv5_4``, i.e. before its ReLU, as ESRGAN and SPSR do), after ImageNet
    mean/std normalisation of inputs in ``[0, 1]``. Parameters are frozen
    (``requires_grad=False``) and the module stays in eval mode; gradients still flow
    to the *input*.

    Args:
        layer: a name from :data:`VGG19_LAYERS` (``"conv5_4"``, ``"relu5_4"``, ``"conv4_4"``...).
        weights: path to a torchvision VGG19 state dict; ``None`` uses the torch hub cache.
        pretrained: ``False`` keeps the random initialisation and reads no file (tests only:
            the loss is then not a perceptual loss).
        normalize: apply ImageNet normalisation (inputs in ``[0, 1]``).

    Shape: ``(B, 3, H, W) -> (B, C_layer, H / 2^k, W / 2^k)``.
    """

    def __init__(
        self,
        layer: str = "conv5_4",
        *,
        weights: Union[str, os.PathLike, None] = None,
        pretrained: bool = True,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(f"VGGFeatureExtractor: layer must be one of {VGG19_LAYERS}, got {layer!r}")
        from torchvision.models.vgg import cfgs, make_layers

        self.layer = layer
        self.normalize = bool(normalize)
        n = VGG19_LAYERS.index(layer) + 1
        path = vgg19_weights_path(weights) if pretrained else None  # fail before building
        full = make_layers(cfgs["E"], batch_norm=False)
        self.features = nn.Sequential(*list(full.children())[:n])
        self.source: Optional[str] = None
        if path is not None:
            self._load(path, n)
            self.source = str(path)
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def _load(self, path: Path, n: int) -> None:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear line
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:
                raise CheckpointError(f"VGG19 weights {str(path)!r} could not be read: {type(exc).__name__}: {exc}") from None
        if not isinstance(sd, dict):
            raise CheckpointError(f"VGG19 weights {str(path)!r}: expected a state dict, got {type(sd).__name__}")
        if "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        wanted = self.features.state_dict()
        picked = {}
        for key, ref in wanted.items():
            src = sd.get(f"features.{key}", sd.get(key))
            if src is None:
                raise CheckpointError(f"VGG19 weights {str(path)!r} lack 'features.{key}' (not a torchvision VGG19 state dict?)")
            if tuple(src.shape) != tuple(ref.shape):
                raise CheckpointError(
                    f"VGG19 weights {str(path)!r}: 'features.{key}' has shape {tuple(src.shape)}, expected {tuple(ref.shape)}"
                )
            picked[key] = src
        self.features.load_state_dict(picked)

    def train(self, mode: bool = True) -> "VGGFeatureExtractor":
        # A frozen loss network always runs in eval mode.
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, "VGGFeatureExtractor", "x")
        if x.shape[1] != 3:
            raise ValueError(f"VGGFeatureExtractor: x must have 3 channels, got {x.shape[1]}")
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.features(x)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, normalize={self.normalize}, source={self.source!r}"


def perceptual_loss(
    sr: Tensor,
    hr: Tensor,
    extractor: nn.Module,
    *,
    criterion: Criterion = "l1",
    reduction: Reduction = "mean",
) -> Tensor:
    """Feature distance ``|| phi(sr) - phi(hr) ||`` (Eq. 4, L1 by default).

    ``hr``'s features are computed without autograd. ``sr``/``hr``: ``(B, 3, H, W)``
    in ``[0, 1]``; ``extractor`` maps images to features (e.g. :class:`VGGFeatureExtractor`).
    """
    _check_image(sr, "perceptual_loss", "sr")
    _check_pair(sr, hr, "perceptual_loss", "sr", "hr")
    with torch.no_grad():
        f_hr = extractor(hr)
    f_sr = extractor(sr)
    return pixel_loss(f_sr, f_hr.detach(), criterion=criterion, reduction=reduction)


class PerceptualLoss(nn.Module):
    """Module twin of :func:`perceptual_loss` owning its frozen VGG19.

    Args:
        layer: VGG19 layer (default ``conv5_4`` before ReLU).
        weights: VGG19 state-dict path; ``None`` = torch hub cache (see :func:`vgg19_weights_path`).
        criterion: ``"l1"`` (paper) / ``"mse"`` / ``"charbonnier"``.
        weight, reduction: as for every gradguide loss.
        extractor: use this feature network instead of building a VGG19 (``layer`` and
            ``weights`` are then ignored).

    Raises:
        WeightsNotFoundError: no VGG19 weights (see :func:`create_perceptual_loss` to drop
            the term explicitly instead).
    """

    def __init__(
        self,
        layer: str = "conv5_4",
        *,
        weights: Union[str, os.PathLike, None] = None,
        criterion: Criterion = "l1",
        weight: float = 1.0,
        reduction: Reduction = "mean",
        extractor: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.criterion = _check_choice(criterion, CRITERIA, "PerceptualLoss: criterion")
        self.reduction = _check_choice(reduction, REDUCTIONS, "PerceptualLoss: reduction")
        self.weight = _check_weight(weight, "PerceptualLoss")
        if extractor is None:
            extractor = VGGFeatureExtractor(layer, weights=weights)
        else:
            extractor.requires_grad_(False)
            extractor.eval()
        self.extractor = extractor

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return self.weight * perceptual_loss(sr, hr, self.extractor, criterion=self.criterion, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"criterion={self.criterion!r}, weight={self.weight}, reduction={self.reduction!r}"


def create_perceptual_loss(
    layer: str = "conv5_4",
    *,
    weights: Union[str, os.PathLike, None] = None,
    on_missing: Literal["error", "drop"] = "error",
    **kw,
) -> Optional[PerceptualLoss]:
    """Build a :class:`PerceptualLoss`; with ``on_missing="drop"`` a missing VGG19 file
    gives a warning and ``None`` (train without the term) instead of an error."""
    _check_choice(on_missing, ("error", "drop"), "create_perceptual_loss: on_missing")
    try:
        return PerceptualLoss(layer, weights=weights, **kw)
    except WeightsNotFoundError as exc:
        if on_missing == "error":
            raise
        warnings.warn(f"perceptual loss dropped: {exc}", RuntimeWarning, stacklevel=2)
        return None


# --------------------------------------------------------------------------- RaGAN


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none")


def _ragan_pair(real: Tensor, fake: Tensor, real_target: float, reduction: str) -> Tensor:
    if not isinstance(real, Tensor) or not isinstance(fake, Tensor):
        raise TypeError("ragan: real and fake logits must be tensors")
    if real.ndim == 0 or fake.ndim == 0 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"ragan: real logits {tuple(real.shape)} and fake logits {tuple(fake.shape)} must be (B, ...) of equal per-sample shape")
    _check_choice(reduction, REDUCTIONS, "ragan: reduction")
    real = real.float()
    fake = fake.float()
    l_real = _bce(real - fake.mean(), real_target)
    l_fake = _bce(fake - real.mean(), 1.0 - real_target)
    if reduction == "none":
        if real.shape != fake.shape:
            raise ValueError("ragan: reduction='none' needs real and fake logits of the same shape")
        return (l_real + l_fake) / 2
    return (_reduce(l_real, reduction) + _reduce(l_fake, reduction)) / 2


def ragan_d_loss(real_logits: Tensor, fake_logits: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Relativistic average GAN loss of the discriminator (ESRGAN, BCE with logits).

    ``(BCE(D(real) - mean D(fake), 1) + BCE(D(fake) - mean D(real), 0)) / 2``.

    Args:
        real_logits, fake_logits: raw discriminator outputs, ``(B, ...)`` (``(B, 1)`` for
            the VGG discriminator, ``(B, 1, H, W)`` per-pixel for the U-Net); the means
            run over all elements. Upcast to float32.
        reduction: ``"mean"``/``"sum"`` of each BCE term, or ``"none"`` (elementwise).
    """
    return _ragan_pair(real_logits, fake_logits, 1.0, reduction)


def ragan_g_loss(real_logits: Tensor, fake_logits: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Relativistic average GAN loss of the generator (Eq. 6 / Eq. 9 as RaGAN):
    ``(BCE(D(real) - mean D(fake), 0) + BCE(D(fake) - mean D(real), 1)) / 2``.

    Pass ``real_logits`` detached (the generator step does not train D)."""
    return _ragan_pair(real_logits, fake_logits, 0.0, reduction)


class RaGANLoss(nn.Module):
    """Module twin of :func:`ragan_d_loss` / :func:`ragan_g_loss`, for images and
    gradient maps alike.

    ``forward(real_logits, fake_logits, *, for_discriminator)`` returns
    ``weight * ragan_d_loss(...)`` or ``weight * ragan_g_loss(...)``.
    """

    def __init__(self, *, weight: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.weight = _check_weight(weight, "RaGANLoss")
        self.reduction = _check_choice(reduction, REDUCTIONS, "RaGANLoss: reduction")

    def forward(self, real_logits: Tensor, fake_logits: Tensor, *, for_discriminator: bool) -> Tensor:
        fn = ragan_d_loss if for_discriminator else ragan_g_loss
        return self.weight * fn(real_logits, fake_logits, reduction=self.reduction)

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return self(real_logits, fake_logits, for_discriminator=True)

    def g_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return self(real_logits, fake_logits, for_discriminator=False)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------- gradient-space


def gradient_pixel_loss(
    sr: Tensor,
    hr: Tensor,
    *,
    criterion: Criterion = "l1",
    padding: str = "zeros",
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> Tensor:
    """Gradient pixel loss ``|| M(sr) - M(hr) ||`` (Eq. 7).

    Args:
        sr, hr: ``(B, C, H, W)`` images.
        criterion: ``"l1"`` as in the paper; ``"mse"`` as in the official code.
        padding: padding of :func:`gradguide.ops.gradient_map`; the official code uses
            ``"official_loss"`` (pad 2, maps 2 px larger).
        eps: the operator's epsilon.
    """
    _check_image(sr, "gradient_pixel_loss", "sr")
    _check_pair(sr, hr, "gradient_pixel_loss", "sr", "hr")
    g_sr = gradient_map(sr.float(), padding=padding, eps=eps)
    g_hr = gradient_map(hr.float(), padding=padding, eps=eps)
    return pixel_loss(g_sr, g_hr, criterion=criterion, reduction=reduction)


class _GradientMapLoss(nn.Module):
    """Shared constructor of the two gradient-map losses' module twins."""

    def __init__(
        self,
        criterion: Criterion = "l1",
        *,
        padding: str = "zeros",
        eps: float = 1e-6,
        weight: float = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.criterion = _check_choice(criterion, CRITERIA, f"{name}: criterion")
        self.padding = _check_choice(padding, PADDINGS, f"{name}: padding")
        self.eps = float(eps)
        self.weight = _check_weight(weight, name)
        self.reduction = _check_choice(reduction, REDUCTIONS, f"{name}: reduction")

    def _loss(self, fn, a: Tensor, b: Tensor) -> Tensor:
        return self.weight * fn(a, b, criterion=self.criterion, padding=self.padding, eps=self.eps, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"criterion={self.criterion!r}, padding={self.padding!r}, weight={self.weight}, reduction={self.reduction!r}"


class GradientPixelLoss(_GradientMapLoss):
    """Module twin of :func:`gradient_pixel_loss`: ``forward(sr, hr)``."""

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return self._loss(gradient_pixel_loss, sr, hr)


def branch_loss(
    grad: Tensor,
    hr: Tensor,
    *,
    criterion: Criterion = "l1",
    padding: str = "zeros",
    eps: float = 1e-6,
    reduction: Reduction = "mean",
    target: Optional[Tensor] = None,
) -> Tensor:
    """The gradient branch's loss ``|| grad - M(hr) ||`` (L_GB^{Pix_GM} in Eq. 10).

    Args:
        grad: the branch's HR gradient map ``SROutput.grad``, ``(B, C, H, W)``.
        hr: the HR images ``(B, C, H, W)``; ignored when ``target`` is given.
        padding: padding of ``M`` for the target; the generator-side operator zero-pads
            by 1 (``"zeros"``), as in the official code.
        target: a precomputed ``M(hr)`` to reuse.
    """
    _check_image(grad, "branch_loss", "grad")
    if target is None:
        _check_image(hr, "branch_loss", "hr")
        target = gradient_map(hr.float(), padding=padding, eps=eps)
    _check_pair(grad, target, "branch_loss", "grad", "M(hr)")
    return pixel_loss(grad, target.detach(), criterion=criterion, reduction=reduction)


class BranchLoss(_GradientMapLoss):
    """Module twin of :func:`branch_loss`: ``forward(grad, hr)``."""

    def forward(self, grad: Tensor, hr: Tensor) -> Tensor:
        return self._loss(branch_loss, grad, hr)


# --------------------------------------------------------------------------- SPSR (Eq. 10)


class GeneratorLoss(NamedTuple):
    """What :meth:`SPSRLoss.forward` returns.

    Attributes:
        total: the weighted sum (scalar, float32, with graph) to ``backward()``.
        terms: weighted value of every computed term as a float, keyed ``pixel``,
            ``perceptual``, ``gan``, ``gradient_pixel``, ``gradient_gan``, ``branch``,
            plus ``total``. Disabled terms are absent.
        sr_grad: ``M(SR)`` as used by the gradient terms (with graph), or ``None`` when no
            gradient term is on. Pass it to :meth:`SPSRLoss.discriminator_loss` to avoid
            recomputing it (it is detached there).
        hr_grad: ``M(HR)`` likewise (no graph).
    """

    total: Tensor
    terms: dict
    sr_grad: Optional[Tensor]
    hr_grad: Optional[Tensor]


class DiscriminatorLoss(NamedTuple):
    """What :meth:`SPSRLoss.discriminator_loss` returns: ``total`` to ``backward()``
    (sum of the D_I and D_GM RaGAN losses; their parameters are disjoint) and float
    ``terms`` (``d_image``, ``d_grad``, mean logits ``d_image_real``/``d_image_fake``,
    ``d_grad_real``/``d_grad_fake``, ``total``)."""

    total: Tensor
    terms: dict


def _as_output(out) -> SROutput:
    if isinstance(out, SROutput):
        return out
    if isinstance(out, Tensor):
        return SROutput(out, None, None)
    raise TypeError(f"SPSRLoss: out must be an SROutput or a tensor, got {type(out).__name__}")


def _floats(named: dict[str, Tensor]) -> dict[str, float]:
    # One host sync for all logged terms.
    if not named:
        return {}
    vals = torch.stack([v.detach().float().reshape(()) for v in named.values()]).tolist()
    return dict(zip(named.keys(), vals))


class SPSRLoss(nn.Module):
    """The SPSR generator objective (Eq. 10) and the two discriminator objectives
    (Eq. 5 and 8, as RaGAN).

    ``L_G = perceptual * L_Per + pixel * L_Pix_I + gan * L_Adv_I + gradient_pixel * L_Pix_GM
    + gradient_gan * L_Adv_GM + branch * L_GB``, with the paper's defaults
    1, 0.01, 0.005, 0.01, 0.005, 0.5. A weight of 0 disables its term: it is not
    computed, and its network (VGG19, D_I, D_GM) is not needed. The PSNR-oriented and
    ESRGAN objectives are this class with weights set (:meth:`psnr`, :meth:`esrgan`);
    :meth:`official` reproduces the official code's choices.

    Args:
        pixel, perceptual, gan, gradient_pixel, gradient_gan, branch: term weights
            (``beta_I``, 1, ``gamma_I``, ``beta_GM``, ``gamma_GM``, ``beta_GB``).
        pixel_criterion, perceptual_criterion, gradient_criterion, branch_criterion:
            ``"l1"``/``"mse"``/``"charbonnier"`` (the paper: L1 everywhere; the official
            code: MSE for ``gradient_pixel``).
        gradient_padding: padding of ``M`` for the gradient pixel and gradient GAN terms
            (``"zeros"``; the official code: ``"official_loss"``, maps 2 px larger).
        branch_padding: padding of ``M(HR)``, the branch target (``"zeros"``, as the
            generator's own operator).
        eps: the operator's epsilon.
        perceptual_layer, vgg_weights: the VGG19 layer and weights file (``None``: the
            torch hub cache).
        on_missing_vgg: ``"error"`` (default) raises :class:`WeightsNotFoundError` when the
            VGG19 file is missing; ``"drop"`` warns and sets the perceptual weight to 0.
        feature_extractor: a ready feature network used instead of VGG19.

    The discriminators are passed to the calls, not owned: :meth:`forward` (the G step)
    and :meth:`discriminator_loss` (the D step).
    """

    def __init__(
        self,
        *,
        pixel: float = 0.01,
        perceptual: float = 1.0,
        gan: float = 0.005,
        gradient_pixel: float = 0.01,
        gradient_gan: float = 0.005,
        branch: float = 0.5,
        pixel_criterion: Criterion = "l1",
        perceptual_criterion: Criterion = "l1",
        gradient_criterion: Criterion = "l1",
        branch_criterion: Criterion = "l1",
        gradient_padding: str = "zeros",
        branch_padding: str = "zeros",
        eps: float = 1e-6,
        perceptual_layer: str = "conv5_4",
        vgg_weights: Union[str, os.PathLike, None] = None,
        on_missing_vgg: Literal["error", "drop"] = "error",
        feature_extractor: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.pixel = _check_weight(pixel, "SPSRLoss: pixel")
        self.perceptual = _check_weight(perceptual, "SPSRLoss: perceptual")
        self.gan = _check_weight(gan, "SPSRLoss: gan")
        self.gradient_pixel = _check_weight(gradient_pixel, "SPSRLoss: gradient_pixel")
        self.gradient_gan = _check_weight(gradient_gan, "SPSRLoss: gradient_gan")
        self.branch = _check_weight(branch, "SPSRLoss: branch")
        self.pixel_criterion = _check_choice(pixel_criterion, CRITERIA, "SPSRLoss: pixel_criterion")
        self.perceptual_criterion = _check_choice(perceptual_criterion, CRITERIA, "SPSRLoss: perceptual_criterion")
        self.gradient_criterion = _check_choice(gradient_criterion, CRITERIA, "SPSRLoss: gradient_criterion")
        self.branch_criterion = _check_choice(branch_criterion, CRITERIA, "SPSRLoss: branch_criterion")
        self.gradient_padding = _check_choice(gradient_padding, PADDINGS, "SPSRLoss: gradient_padding")
        self.branch_padding = _check_choice(branch_padding, PADDINGS, "SPSRLoss: branch_padding")
        self.eps = float(eps)
        _check_choice(on_missing_vgg, ("error", "drop"), "SPSRLoss: on_missing_vgg")
        self.feature_extractor: Optional[nn.Module] = None
        if self.perceptual > 0:
            if feature_extractor is not None:
                self.feature_extractor = feature_extractor.requires_grad_(False).eval()
            else:
                try:
                    self.feature_extractor = VGGFeatureExtractor(perceptual_layer, weights=vgg_weights)
                except WeightsNotFoundError as exc:
                    if on_missing_vgg == "error":
                        raise
                    warnings.warn(f"perceptual term dropped (weight set to 0): {exc}", RuntimeWarning, stacklevel=2)
                    self.perceptual = 0.0

    # ---- presets

    @classmethod
    def paper(cls, **kw) -> "SPSRLoss":
        """The paper's objective (the defaults)."""
        return cls(**kw)

    @classmethod
    def official(cls, **kw) -> "SPSRLoss":
        """The official code's choices: MSE gradient pixel loss, pad-2 loss-side ``M``."""
        kw.setdefault("gradient_criterion", "mse")
        kw.setdefault("gradient_padding", "official_loss")
        return cls(**kw)

    @classmethod
    def esrgan(cls, **kw) -> "SPSRLoss":
        """ESRGAN: perceptual + pixel + image GAN, no gradient terms."""
        for k in ("gradient_pixel", "gradient_gan", "branch"):
            kw.setdefault(k, 0.0)
        return cls(**kw)

    @classmethod
    def psnr(cls, *, pixel: float = 1.0, **kw) -> "SPSRLoss":
        """PSNR-oriented pre-training: pixel loss only (plus the branch loss if ``branch``
        is given a weight)."""
        for k in ("perceptual", "gan", "gradient_pixel", "gradient_gan", "branch"):
            kw.setdefault(k, 0.0)
        return cls(pixel=pixel, **kw)

    # ---- what is needed

    @property
    def needs_image_discriminator(self) -> bool:
        return self.gan > 0

    @property
    def needs_gradient_discriminator(self) -> bool:
        return self.gradient_gan > 0

    @property
    def uses_gradient_maps(self) -> bool:
        return self.gradient_pixel > 0 or self.gradient_gan > 0

    def gradient_maps(self, sr: Tensor, hr: Tensor) -> tuple[Tensor, Tensor]:
        """``(M(sr), M(hr))`` with the loss-side padding, in float32; ``M(hr)`` without graph."""
        g_sr = gradient_map(sr.float(), padding=self.gradient_padding, eps=self.eps)
        with torch.no_grad():
            g_hr = gradient_map(hr.float(), padding=self.gradient_padding, eps=self.eps)
        return g_sr, g_hr

    # ---- G step

    def forward(
        self,
        out: Union[SROutput, Tensor],
        hr: Tensor,
        d_image: Optional[nn.Module] = None,
        d_grad: Optional[nn.Module] = None,
    ) -> GeneratorLoss:
        """The generator loss (Eq. 10).

        Args:
            out: the generator's :class:`~gradguide.types.SROutput` (or a plain SR tensor).
                ``out.sr``: ``(B, C, H, W)``; ``out.grad``: ``(B, C, H, W)`` or ``None``
                (the branch term is then skipped).
            hr: HR batch ``(B, C, H, W)``, same shape as ``out.sr``.
            d_image: ``D_I`` (required when ``gan > 0``). Its real logits are taken
                without autograd; freeze its parameters during the G step yourself.
            d_grad: ``D_GM`` (required when ``gradient_gan > 0``).
        """
        out = _as_output(out)
        sr = out.sr
        _check_image(sr, "SPSRLoss", "out.sr")
        _check_pair(sr, hr, "SPSRLoss", "out.sr", "hr")
        if self.gan > 0 and d_image is None:
            raise ValueError(f"SPSRLoss: gan weight is {self.gan} but no d_image discriminator was given")
        if self.gradient_gan > 0 and d_grad is None:
            raise ValueError(f"SPSRLoss: gradient_gan weight is {self.gradient_gan} but no d_grad discriminator was given")
        sr32 = sr.float()
        hr32 = hr.detach().float()
        parts: dict[str, Tensor] = {}
        if self.pixel > 0:
            parts["pixel"] = self.pixel * pixel_loss(sr32, hr32, criterion=self.pixel_criterion)
        if self.perceptual > 0:
            assert self.feature_extractor is not None
            parts["perceptual"] = self.perceptual * perceptual_loss(
                sr, hr.detach(), self.feature_extractor, criterion=self.perceptual_criterion
            ).float()
        if self.gan > 0:
            with torch.no_grad():
                real = d_image(hr.detach())
            fake = d_image(sr)
            parts["gan"] = self.gan * ragan_g_loss(real.detach(), fake)
        g_sr = g_hr = None
        if self.uses_gradient_maps:
            g_sr, g_hr = self.gradient_maps(sr32, hr32)
            if self.gradient_pixel > 0:
                parts["gradient_pixel"] = self.gradient_pixel * pixel_loss(g_sr, g_hr, criterion=self.gradient_criterion)
            if self.gradient_gan > 0:
                with torch.no_grad():
                    real_g = d_grad(g_hr)
                fake_g = d_grad(g_sr)
                parts["gradient_gan"] = self.gradient_gan * ragan_g_loss(real_g.detach(), fake_g)
        if self.branch > 0 and out.grad is not None:
            if g_hr is not None and self.branch_padding == self.gradient_padding:
                target = g_hr
            else:
                with torch.no_grad():
                    target = gradient_map(hr32, padding=self.branch_padding, eps=self.eps)
            parts["branch"] = self.branch * branch_loss(out.grad.float(), hr32, criterion=self.branch_criterion, target=target)
        if parts:
            total = torch.stack([p.reshape(()) for p in parts.values()]).sum()
        else:
            total = sr32.sum() * 0.0
        terms = _floats({**parts, "total": total})
        return GeneratorLoss(total, terms, g_sr, g_hr)

    generator_loss = forward

    # ---- D step

    def discriminator_loss(
        self,
        out: Union[SROutput, Tensor],
        hr: Tensor,
        d_image: Optional[nn.Module] = None,
        d_grad: Optional[nn.Module] = None,
        *,
        sr_grad: Optional[Tensor] = None,
        hr_grad: Optional[Tensor] = None,
    ) -> DiscriminatorLoss:
        """RaGAN losses of ``D_I`` (Eq. 5) on images and ``D_GM`` (Eq. 8) on gradient maps.

        ``out.sr`` (and ``sr_grad``) are detached here, so only the discriminators get
        gradients. A discriminator whose weight (``gan`` / ``gradient_gan``) is 0 is not
        called. ``sr_grad``/``hr_grad``: the maps from :class:`GeneratorLoss`, to reuse.
        Returns a :class:`DiscriminatorLoss`; ``total`` is unweighted (each D's own loss).
        """
        out = _as_output(out)
        sr = out.sr.detach()
        _check_image(sr, "SPSRLoss.discriminator_loss", "out.sr")
        _check_pair(sr, hr, "SPSRLoss.discriminator_loss", "out.sr", "hr")
        parts: dict[str, Tensor] = {}
        logs: dict[str, Tensor] = {}
        if self.gan > 0:
            if d_image is None:
                raise ValueError(f"SPSRLoss: gan weight is {self.gan} but no d_image discriminator was given")
            real = d_image(hr.detach())
            fake = d_image(sr)
            parts["d_image"] = ragan_d_loss(real, fake)
            logs["d_image_real"] = real.detach().float().mean()
            logs["d_image_fake"] = fake.detach().float().mean()
        if self.gradient_gan > 0:
            if d_grad is None:
                raise ValueError(f"SPSRLoss: gradient_gan weight is {self.gradient_gan} but no d_grad discriminator was given")
            if sr_grad is None or hr_grad is None:
                g_sr, g_hr = self.gradient_maps(sr, hr.detach())
                sr_grad = g_sr if sr_grad is None else sr_grad
                hr_grad = g_hr if hr_grad is None else hr_grad
            real_g = d_grad(hr_grad.detach())
            fake_g = d_grad(sr_grad.detach())
            parts["d_grad"] = ragan_d_loss(real_g, fake_g)
            logs["d_grad_real"] = real_g.detach().float().mean()
            logs["d_grad_fake"] = fake_g.detach().float().mean()
        if parts:
            total = torch.stack([p.reshape(()) for p in parts.values()]).sum()
        else:
            total = torch.zeros((), device=sr.device)
        terms = _floats({**parts, **logs, "total": total})
        return DiscriminatorLoss(total, terms)

    def extra_repr(self) -> str:
        return (
            f"pixel={self.pixel}, perceptual={self.perceptual}, gan={self.gan}, gradient_pixel={self.gradient_pixel}, "
            f"gradient_gan={self.gradient_gan}, branch={self.branch}, gradient_criterion={self.gradient_criterion!r}, "
            f"gradient_padding={self.gradient_padding!r}"
        )


# --------------------------------------------------------------------------- registry helpers


def builtin_losses() -> list:
    """The :class:`gradguide.registry.LossEntry` objects gradguide registers itself."""
    from .registry import LossEntry

    return [
        LossEntry("pixel", PixelLoss, "pixelwise L1 / MSE / Charbonnier (Eq. 3)"),
        LossEntry("perceptual", PerceptualLoss, "VGG19 feature L1, conv5_4 before ReLU (Eq. 4)"),
        LossEntry("ragan", RaGANLoss, "relativistic average GAN, BCE with logits (Eq. 5, 6, 8, 9)"),
        LossEntry("gradient_pixel", GradientPixelLoss, "|| M(SR) - M(HR) || (Eq. 7)"),
        LossEntry("branch", BranchLoss, "gradient branch output vs M(HR)"),
        LossEntry("spsr", SPSRLoss, "the full SPSR objective (Eq. 10)"),
    ]


def create_loss(name: str, **kw) -> nn.Module:
    """Build a registered loss by name (``list_losses()`` lists them)."""
    from .plugins import registries

    return registries().losses.get(name).factory(**kw)


def list_losses() -> list[str]:
    from .plugins import registries

    return registries().losses.names()
