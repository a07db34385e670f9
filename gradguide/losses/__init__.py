"""SPSR objectives (paper Eq. 3-10): functions first, each with a thin module twin.

Every term is a function ``f(input, target, ..., reduction="mean")`` and an
``nn.Module`` holding ``weight`` and ``reduction`` whose ``forward`` returns
``weight * f(...)``. One file per kind:

==================  ===========================  =====================================  ==============================
registry name       file                         function                               module
==================  ===========================  =====================================  ==============================
``pixel``           ``pixel.py``                 :func:`pixel_loss` (L1/MSE/Charb.)     :class:`PixelLoss`
``perceptual``      ``perceptual.py`` (VGG19)    :func:`perceptual_loss`                :class:`PerceptualLoss`
``ragan``           ``adversarial.py``           :func:`ragan_d_loss`/:func:`ragan_g_loss` :class:`RaGANLoss`
``gradient_pixel``  ``gradient.py``              :func:`gradient_pixel_loss` (Eq. 7)    :class:`GradientPixelLoss`
``branch``          ``gradient.py``              :func:`branch_loss` (L_GB^PixGM)       :class:`BranchLoss`
``spsr``            ``spsr.py``                  --                                     :class:`SPSRLoss` (Eq. 10)
==================  ===========================  =====================================  ==============================

Each file lists its registry entries in a module-level ``LOSSES``; :func:`builtin_losses`
collects the ``LOSSES`` of every module in this package, so a new loss (or a new
:class:`SPSRLoss` term, ``LossEntry(..., term=True)``) is one new file here.

All loss arithmetic is done in float32 (inputs are upcast), and the adversarial
terms use binary cross-entropy *with logits*, so the losses are safe under
``torch.autocast``. Nothing here picks a device or downloads anything: VGG19
weights come from an explicit file or the torch hub cache, never the network.
"""
from __future__ import annotations

import importlib
import pkgutil

from torch import nn

from ..errors import WeightsNotFoundError
from ..ops import gradient_map
from ..plugins import registries
from ..registry import LossEntry
from ._common import CRITERIA, REDUCTIONS, Criterion, Reduction
from .adversarial import RaGANLoss, ragan_d_loss, ragan_g_loss
from .gradient import BranchLoss, GradientPixelLoss, branch_loss, gradient_pixel_loss
from .perceptual import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG19_LAYERS,
    PerceptualLoss,
    VGGFeatureExtractor,
    create_perceptual_loss,
    perceptual_loss,
    vgg19_weights_path,
)
from .pixel import PixelLoss, charbonnier_loss, pixel_loss
from .spsr import DiscriminatorLoss, GeneratorLoss, SPSRLoss

__all__ = [
    "Criterion",
    "Reduction",
    "CRITERIA",
    "REDUCTIONS",
    "WeightsNotFoundError",
    "pixel_loss",
    "charbonnier_loss",
    "PixelLoss",
    "VGG19_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
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
    "gradient_map",
    "builtin_losses",
    "create_loss",
    "list_losses",
]


def builtin_losses() -> list[LossEntry]:
    """The ``LOSSES`` entries of every module of this package, in module-name order."""
    out: list[LossEntry] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            out.extend(getattr(importlib.import_module(f"{__name__}.{info.name}"), "LOSSES", []))
    return out


def create_loss(name: str, **kw) -> nn.Module:
    """Build a registered loss by name (``list_losses()`` lists them)."""
    return registries().losses.get(name).factory(**kw)


def list_losses() -> list[str]:
    return registries().losses.names()
