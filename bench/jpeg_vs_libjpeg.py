"""How far kornia's batched JPEG (``gradguide.data.degrade.jpeg``) is from libjpeg (Pillow).

Usage: ``python bench/jpeg_vs_libjpeg.py [--size 256]``. For a few of scikit-image's
bundled photos and qualities 30..95 (Real-ESRGAN's range) it prints, after rounding both
decodes to 8 bits: PSNR between the two codecs, and each codec's PSNR against the
original. The numbers are quoted in ``docs/real-world.md``. Offline, CPU, a few seconds.
"""
from __future__ import annotations

import argparse
import io

import numpy as np
import torch


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def compare(size: int = 256, qualities=(30, 50, 75, 95)) -> list[dict]:
    from PIL import Image
    from skimage import data

    from gradguide.data.degrade import jpeg

    rows = []
    for name in ("astronaut", "coffee", "chelsea"):
        im = np.ascontiguousarray(getattr(data, name)()[:size, :size])
        x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
        orig = im / 255.0
        for q in qualities:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, "JPEG", quality=q)  # libjpeg, 4:2:0, standard tables
            pil = np.asarray(Image.open(buf)).astype(np.float64) / 255
            k = jpeg(x, torch.tensor([float(q)]))[0].permute(1, 2, 0).double().numpy()
            k = np.round(k * 255) / 255
            rows.append({"image": name, "quality": q, "kornia_vs_libjpeg": _psnr(k, pil),
                         "libjpeg_vs_orig": _psnr(pil, orig), "kornia_vs_orig": _psnr(k, orig)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    print(f"{'image':10} {'q':>3} {'kornia~libjpeg':>15} {'libjpeg~orig':>13} {'kornia~orig':>12}  (PSNR dB)")
    for r in compare(args.size):
        print(f"{r['image']:10} {r['quality']:3d} {r['kornia_vs_libjpeg']:15.2f} {r['libjpeg_vs_orig']:13.2f} {r['kornia_vs_orig']:12.2f}")


if __name__ == "__main__":
    main()
