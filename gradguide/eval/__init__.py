"""gradguide.eval: the SR evaluation protocol, metrics and reports.

Importing it is cheap (torch and numpy only); kornia, lpips and scipy load on first use.
"""
from __future__ import annotations

from .border import BorderCost, border_cost, border_study
from .evaluate import BICUBIC, DatasetResult, EvalReport, ImageScores, evaluate, find_pairs
from .lpips_metric import LPIPSMetric, LPIPSWeightsMissing, create_lpips, lpips_distance
from .metrics import PSNRY, SSIMY, crop_border, gmsd, gradient_l1, psnr_rgb, psnr_y, quantize, rgb_to_y, ssim_y
from .niqe import NIQE, niqe, niqe_y
from .protocol import METRICS, Protocol

__all__ = [
    "evaluate", "EvalReport", "border_cost", "border_study", "BorderCost", "DatasetResult", "ImageScores", "find_pairs", "BICUBIC", "Protocol", "METRICS",
    "psnr_y", "ssim_y", "psnr_rgb", "rgb_to_y", "quantize", "crop_border", "gmsd", "gradient_l1", "PSNRY", "SSIMY",
    "niqe", "niqe_y", "NIQE", "create_lpips", "lpips_distance", "LPIPSMetric", "LPIPSWeightsMissing",
]
