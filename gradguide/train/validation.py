"""Validation during training: Y-channel PSNR/SSIM of a model over a validation set and,
with ``colour=True``, the colour figures that Y-channel metrics cannot show (PSNR on RGB,
CIEDE2000, and the mean signed error of each RGB channel, where a colour or intensity
drift of training shows first)."""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
from torch import nn

from ..eval.metrics import ciede2000, psnr_rgb, psnr_y, quantize, ssim_y
from ..types import as_output

__all__ = ["validate"]


@torch.no_grad()
def validate(
    model: nn.Module, dataset, *, scale: int, max_images: int = 0,
    to_device: Callable[[torch.Tensor], torch.Tensor] = lambda x: x, autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    colour: bool = False,
) -> dict:
    """Mean PSNR-Y and SSIM-Y (border crop = ``scale``) of ``model`` over ``dataset``'s
    ``(lr, hr)`` items (the first ``max_images``; 0 = all), in eval mode (restored after).
    Returns ``{"psnr_y", "ssim_y", "images"}``; with ``colour`` also ``psnr_rgb``,
    ``ciede2000`` and ``bias_r``/``bias_g``/``bias_b``: the mean of ``SR - HR`` per channel
    after rounding to uint8, in ``[-1, 1]`` units (0 when training keeps colour)."""
    was = model.training
    model.eval()
    n = min(len(dataset), max_images) if max_images else len(dataset)
    rows: dict[str, list[float]] = {}
    try:
        for i in range(n):
            lr, hr = dataset[i][:2]
            with autocast():
                sr = as_output(model(to_device(lr.unsqueeze(0)))).sr
            # rounded to uint8 once: every metric below measures these values
            sr8 = quantize(sr.float().cpu()[0]).to(torch.uint8)
            hr8 = quantize(hr).to(torch.uint8)
            got = {"psnr_y": psnr_y(sr8, hr8, crop=scale), "ssim_y": ssim_y(sr8, hr8, crop=scale)}
            if colour:
                bias = (sr8.double() - hr8.double()).mean(dim=(1, 2)) / 255.0
                got.update(psnr_rgb=psnr_rgb(sr8, hr8, crop=scale), ciede2000=ciede2000(sr8, hr8, crop=scale),
                           bias_r=bias[0], bias_g=bias[1], bias_b=bias[2])
            for k, v in got.items():
                rows.setdefault(k, []).append(float(v))
    finally:
        model.train(was)
    return {**{k: sum(v) / n for k, v in rows.items()}, "images": n}
