"""The perceptual loss (Eq. 4): a frozen VGG19 feature extractor, its weights file, and
the loss. Nothing is downloaded: weights come from a file or the torch hub cache."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal, Optional, Union

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, WeightsNotFoundError
from ._common import CRITERIA, REDUCTIONS, Criterion, Reduction, _check_choice, _check_image, _check_pair, _check_weight
from .pixel import pixel_loss
from ..registry import LossEntry

__all__ = [
    "VGG19_LAYERS", "IMAGENET_MEAN", "IMAGENET_STD", "vgg19_weights_path", "VGGFeatureExtractor",
    "perceptual_loss", "PerceptualLoss", "create_perceptual_loss",
]


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


LOSSES = [
    LossEntry("perceptual", PerceptualLoss, "VGG19 feature L1, conv5_4 before ReLU (Eq. 4)"),
]
