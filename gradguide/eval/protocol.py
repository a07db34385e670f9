"""The evaluation protocol, as data: what every reported number was computed with."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import EvalError

__all__ = ["Protocol", "METRICS", "NO_REFERENCE", "LOWER_IS_BETTER", "SIGNED", "EvalError"]



#: metric keys in the order of the paper's Table 1 (PI, LPIPS, PSNR, SSIM), then the extras
#: (colour fidelity: CIEDE2000 and PSNR on RGB; border artifacts: PSNR-Y on the 8-px frame
#: against the interior)
METRICS: tuple[str, ...] = (
    "PI", "LPIPS", "PSNR", "SSIM", "NIQE", "GMSD", "GradL1", "CIEDE2000", "PSNR-RGB", "PSNR-frame8", "PSNR-inner8",
    "Bias-frame8",
)
#: the metrics that need no HR image (``gradguide eval --no-reference``, real LR photos)
NO_REFERENCE: tuple[str, ...] = ("PI", "NIQE")
LOWER_IS_BETTER: frozenset[str] = frozenset({"PI", "LPIPS", "NIQE", "GMSD", "GradL1", "CIEDE2000"})
#: signed metrics: best at 0
SIGNED: frozenset[str] = frozenset({"Bias-frame8"})


@dataclass(frozen=True)
class Protocol:
    """Recorded with every result (JSON ``protocol``, the table caption)."""

    scale: int
    crop: int
    reference: str = "HR images; LR from them as below, or from a paired LR folder"
    colour_space: str = "Y of ITU-R BT.601 as MATLAB rgb2ycbcr (16-235), rounded to integers (PSNR, SSIM, NIQE)"
    rounding: str = "SR and HR rounded to uint8 (round half up, clipped) before every metric"
    resize_kernel: str = (
        "MATLAB imresize bicubic (Keys a=-0.5, antialiased, symmetric borders), uint8 in/out, "
        "HR cropped to a multiple of the scale"
    )
    crop_applies_to: str = "all metrics (PSNR, SSIM, LPIPS, NIQE, GMSD, GradL1)"
    ssim: str = "Wang et al. 2004: 11x11 Gaussian window sigma 1.5, K1=0.01, K2=0.03, L=255, valid region, on Y"
    lpips: str = "lpips 0.1 (AlexNet trunk unless stated), RGB in [-1, 1]"
    niqe: str = "niqe_release (MATLAB) port: 96x96 blocks, pristine parameters, Y channel"
    gmsd: str = "Xue et al. 2014 GMSD.m: luma 0.299/0.587/0.114, 2x2 average + decimation, Prewitt, c=170"
    gradient_l1: str = "mean |M(SR) - M(HR)|, SPSR Eq. 2 with zero padding, RGB in [0, 1]"
    pi: str = "PI = ((10 - Ma) + NIQE) / 2; needs Ma et al.'s model"
    colour: str = (
        "CIEDE2000: mean per-pixel Delta E 2000 (skimage.color.deltaE_ciede2000) of sRGB (D65) -> CIELAB; "
        "PSNR-RGB: PSNR over R, G and B (peak 255); both after the border crop"
    )
    frame: str = (
        "PSNR-frame8: PSNR-Y over the outermost 8 px of the image (no border crop); PSNR-inner8: PSNR-Y inside "
        "that frame; a border artifact shows as a frame figure that falls behind bicubic's more than the inner one; "
        "Bias-frame8: mean signed Y error (SR - HR, levels of 255) over that frame, positive for a bright frame"
    )

    def to_dict(self) -> dict:
        return asdict(self)
