"""gradguide.infer: tiled streaming upscaling and ONNX export."""
from __future__ import annotations

from .ensemble import SelfEnsemble, self_ensemble
from .onnx_export import OnnxExportReport, export_onnx
from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE, PRECISIONS, model_scale, run_tiles, split_output, tiled_forward
from .upscale import UpscaleResult, upscale, upscale_image

__all__ = [
    "DEFAULT_TILE", "DEFAULT_OVERLAP", "PRECISIONS", "model_scale", "run_tiles", "split_output", "tiled_forward",
    "UpscaleResult", "upscale", "upscale_image", "OnnxExportReport", "export_onnx", "SelfEnsemble", "self_ensemble",
]
