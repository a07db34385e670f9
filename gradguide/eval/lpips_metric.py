"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with offline weight loading.

``lpips.LPIPS(net='alex')`` downloads torchvision's ImageNet AlexNet at construction,
which fails offline (URLError). Here the LPIPS model is built with a random trunk
(``pnet_rand=True``; the package ships the calibrated linear layers) and the trunk's
ImageNet weights are then loaded from a local file: an explicit path, or torchvision's
file in the torch hub cache (``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``,
``vgg16-397923af.pth``). When neither exists :class:`LPIPSWeightsMissing` names the
path looked at; the evaluator turns it into a skipped metric with a note, never a number.

``random_backbone=True`` keeps the random trunk: the wiring runs, the number is not
LPIPS (tests only; the evaluator labels it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from ..errors import LPIPSWeightsMissing

__all__ = ["LPIPSWeightsMissing", "BACKBONE_FILES", "backbone_weights_path", "create_lpips", "lpips_distance", "LPIPSMetric"]

#: torchvision file names of the trunks LPIPS uses
BACKBONE_FILES: dict[str, str] = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def backbone_weights_path(net: str = "alex", weights: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Where the trunk weights are: ``weights`` if given, else the torch hub cache.

    Raises:
        LPIPSWeightsMissing: the file does not exist (the message names it).
    """
    if net not in BACKBONE_FILES:
        raise ValueError(f"lpips net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
    if weights is not None:
        p = Path(weights)
        if not p.is_file():
            raise LPIPSWeightsMissing(f"{p}: LPIPS {net} trunk weights not found")
        return p
    p = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
    if not p.is_file():
        raise LPIPSWeightsMissing(
            f"{p}: LPIPS {net} trunk weights not found (no network access at run time; "
            f"copy torchvision's {BACKBONE_FILES[net]} there or pass --lpips-weights FILE)"
        )
    return p


def create_lpips(net: str = "alex", *, weights: Optional[Union[str, os.PathLike]] = None, random_backbone: bool = False) -> nn.Module:
    """Build an ``lpips.LPIPS`` model without any download, in eval mode, frozen.

    Args:
        net: ``"alex"`` (the paper's choice and the default) or ``"vgg"``.
        weights: torchvision state dict of the trunk; default: the torch hub cache.
        random_backbone: keep a random trunk (wiring tests only; not a real metric).
    """
    import lpips
    import torchvision

    if net not in BACKBONE_FILES:
        raise ValueError(f"lpips net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
    path = None if random_backbone else backbone_weights_path(net, weights)
    import warnings

    with warnings.catch_warnings():  # torchvision's 'pretrained' deprecation chatter from lpips
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LPIPSWeightsMissing(f"{path}: cannot read LPIPS {net} trunk weights ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        tv = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
        try:
            tv.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise LPIPSWeightsMissing(f"{path}: not a torchvision {net} state dict ({str(exc).splitlines()[0]})") from None
        # lpips' trunk holds torchvision's feature layers in slices named by their index
        for slice_ in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
            for name, layer in slice_.named_children():
                layer.load_state_dict(tv.features[int(name)].state_dict())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.gradguide_random_backbone = bool(random_backbone)  # labelled in reports
    return model


def lpips_distance(sr: Tensor, hr: Tensor, model: nn.Module, *, crop: int = 0, quantize: bool = True) -> Tensor:
    """LPIPS between ``(B, 3, H, W)`` images in ``[0, 1]`` (or uint8). Returns ``(B,)``.

    Images are rounded to uint8 first under the protocol and cropped by ``crop``; the
    model runs on the device and dtype of its parameters.
    """
    from .metrics import _prepare, crop_border

    a, b = _prepare(sr, hr, quantize)
    p = next(model.parameters())
    a = crop_border(a, crop).to(device=p.device, dtype=p.dtype) / 255.0
    b = crop_border(b, crop).to(device=p.device, dtype=p.dtype) / 255.0
    with torch.no_grad():
        d = model(a, b, normalize=True)
    return d.flatten(1).mean(dim=1).to(torch.float64).cpu()


class LPIPSMetric(nn.Module):
    """Module twin of :func:`lpips_distance` holding the LPIPS model."""

    def __init__(self, net: str = "alex", *, weights=None, random_backbone: bool = False, crop: int = 0) -> None:
        super().__init__()
        self.model = create_lpips(net, weights=weights, random_backbone=random_backbone)
        self.crop = int(crop)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return lpips_distance(sr, hr, self.model, crop=self.crop)
