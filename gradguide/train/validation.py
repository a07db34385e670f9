"""Validation during training: Y-channel PSNR/SSIM of a model over a validation set."""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
from torch import nn

from ..eval.metrics import psnr_y, ssim_y
from ..types import as_output

__all__ = ["validate"]


@torch.no_grad()
def validate(
    model: nn.Module, dataset, *, scale: int, max_images: int = 0,
    to_device: Callable[[torch.Tensor], torch.Tensor] = lambda x: x, autocast: Callable[[], ContextManager] = contextlib.nullcontext,
) -> dict:
    """Mean PSNR-Y and SSIM-Y (border crop = ``scale``) of ``model`` over ``dataset``'s
    ``(lr, hr)`` items (the first ``max_images``; 0 = all), in eval mode (restored after).
    Returns ``{"psnr_y", "ssim_y", "images"}``."""
    was = model.training
    model.eval()
    n = min(len(dataset), max_images) if max_images else len(dataset)
    psnrs, ssims = [], []
    try:
        for i in range(n):
            lr, hr = dataset[i][:2]
            with autocast():
                sr = as_output(model(to_device(lr.unsqueeze(0)))).sr
            sr = sr.float().clamp_(0, 1).cpu()[0]
            psnrs.append(float(psnr_y(sr, hr, crop=scale)))
            ssims.append(float(ssim_y(sr, hr, crop=scale)))
    finally:
        model.train(was)
    return {"psnr_y": sum(psnrs) / n, "ssim_y": sum(ssims) / n, "images": n}
