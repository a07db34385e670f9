"""gradguide.data: MATLAB-compatible ``imresize``, SR datasets and paired transforms.

See ``docs/data.md``. Items of every dataset are ``(lr, hr)`` float32 tensor pairs.
"""
from __future__ import annotations

from .datasets import (
    HRFolderDataset,
    PairedFolderDataset,
    ValidationDataset,
    demo_images,
    scan_images,
    skimage_dataset,
)
from .imresize import imresize

__all__ = [
    "imresize",
    "HRFolderDataset",
    "PairedFolderDataset",
    "ValidationDataset",
    "demo_images",
    "scan_images",
    "skimage_dataset",
]
