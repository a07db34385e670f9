"""Guidance specs for models loaded by spandrel (``ModelLoader().load_from_file(p).model``).

Registered by class name (``BackboneEntry.class_names``), so spandrel is imported only
when one of its models is actually built; ``wrap(descriptor.model)`` needs no spec.

* ESRGAN (spandrel's old-layout ``RRDBNet``: one ``model`` Sequential): taps after
  RRDBs ``model.1.sub.N`` (:func:`gradguide.spec.even_taps`), LR feature the trunk conv
  ``model.1.sub.<nb>``, the final conv ``model.<last>`` is replaced.
* SwinIR: taps ``layers.N.conv`` (the RSTB convs, which output feature maps; the RSTBs
  themselves output tokens), LR feature ``conv_after_body``; ``conv_last`` is replaced
  for the classical and real-world variants (the lightweight one only allows LR fusion).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from gradguide.plugin import Architecture, GuidanceSpec, SpecError, Tap, even_taps

__all__ = ["esrgan_spec", "swinir_spec", "backbone_entries"]

ESRGAN_CLASS = "spandrel.architectures.ESRGAN.__arch.RRDB.RRDBNet"
SWINIR_CLASS = "spandrel.architectures.SwinIR.__arch.SwinIR.SwinIR"


def _esrgan_parts(model: nn.Module) -> tuple[nn.Conv2d, nn.Module, nn.Conv2d, int]:
    seq = model.model
    first, trunk, last = seq[0], seq[1], seq[len(seq) - 1]
    if not isinstance(first, nn.Conv2d) or not isinstance(last, nn.Conv2d) or not hasattr(trunk, "sub"):
        raise SpecError(f"spandrel ESRGAN: unexpected layout of {type(model).__name__}.model (norm layers or a new variant?)")
    return first, trunk, last, len(seq) - 1


def esrgan_spec(model: nn.Module) -> GuidanceSpec:
    if getattr(model, "shuffle_factor", None):
        raise SpecError("spandrel ESRGAN with pixel-unshuffle input (Real-ESRGAN x1/x2 style) is not supported: its taps are not at LR resolution")
    first, trunk, last, last_idx = _esrgan_parts(model)
    nb = len(trunk.sub) - 1
    nf = first.out_channels
    return GuidanceSpec(
        taps=tuple(Tap(f"model.1.sub.{i}", nf) for i in even_taps(nb)),
        replace=f"model.{last_idx}", hr_channels=last.in_channels, scale=int(model.scale),
        lr_feature=f"model.1.sub.{nb}", lr_channels=nf, in_channels=first.in_channels, out_channels=last.out_channels,
    )


def _esrgan_config(model: nn.Module) -> dict:
    first, trunk, last, _ = _esrgan_parts(model)
    return dict(in_nc=first.in_channels, out_nc=last.out_channels, num_filters=first.out_channels,
                num_blocks=len(trunk.sub) - 1, scale=int(model.scale))


def _esrgan_factory(**cfg: Any) -> nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN(**cfg)


def swinir_spec(model: nn.Module) -> GuidanceSpec:
    if getattr(model, "start_unshuffle", 1) > 1:
        raise SpecError("spandrel SwinIR with start_unshuffle > 1 is not supported: its taps are not at LR resolution")
    up = model.upsampler
    if up not in ("pixelshuffle", "pixelshuffledirect", "nearest+conv"):
        raise SpecError(f"spandrel SwinIR with upsampler={up!r} is not an SR model gradguide can guide")
    ed = model.conv_first.out_channels
    has_last = up != "pixelshuffledirect"
    return GuidanceSpec(
        taps=tuple(Tap(f"layers.{i}.conv", ed) for i in even_taps(len(model.layers))),
        replace="conv_last" if has_last else None, hr_channels=model.conv_last.in_channels if has_last else None,
        scale=int(model.upscale), lr_feature="conv_after_body", lr_channels=ed,
        in_channels=model.conv_first.in_channels,
        out_channels=model.conv_last.out_channels if has_last else model.upsample[0].out_channels // int(model.upscale) ** 2,
    )


def _swinir_factory(**cfg: Any) -> nn.Module:
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(**cfg)


def backbone_entries() -> list[Architecture]:
    return [
        Architecture(
            name="spandrel-esrgan", factory=_esrgan_factory, classes=(), class_names=(ESRGAN_CLASS,), spec=esrgan_spec,
            config_of=_esrgan_config, scales=(2, 4, 8), description="spandrel's ESRGAN (old-layout RRDBNet) model",
        ),
        Architecture(
            name="spandrel-swinir", factory=_swinir_factory, classes=(), class_names=(SWINIR_CLASS,), spec=swinir_spec,
            config_of=lambda m: dict(m.hyperparameters), scales=(2, 3, 4, 8), scale_arg="upscale", description="spandrel's SwinIR model",
        ),
    ]
