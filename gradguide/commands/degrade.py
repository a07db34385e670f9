"""``gradguide degrade``: what a real-world recipe trains on, written to files.

Each HR image of ``IN_DIR`` goes through the recipe's degradation pipeline
(:mod:`gradguide.data.degrade`) with a fixed seed: image ``i`` uses the item key
``item_key(seed, 0, i)``, so the same command always writes the same pairs. The layout
is the paired one ``gradguide eval --data`` reads::

    OUT_DIR/HR/<name>.png        the HR target (USM-sharpened when degradation.gt_usm)
    OUT_DIR/LR/X<s>/<name>.png   its degraded LR
    OUT_DIR/preview.png          --preview: a contact sheet (HR crop, then N draws)
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, fmt: type) -> None:
    p = sub.add_parser(
        "degrade",
        help="write degraded LR/HR pairs (Real-ESRGAN pipeline of a recipe) to see what a model trains on",
        description="Degrade every HR image of IN_DIR with the recipe's [degradation] section (Real-ESRGAN's "
        "second-order model) and a fixed seed; write OUT_DIR/HR/ and OUT_DIR/LR/X<scale>/ (the paired layout "
        "`gradguide eval --data` reads). --preview also writes OUT_DIR/preview.png, a contact sheet of several "
        "draws per image.",
        formatter_class=fmt,
    )
    p.add_argument("in_dir", metavar="IN_DIR", help="folder of HR images")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    p.add_argument("--recipe", required=True, metavar="R", help="recipe name or .toml file; its [degradation] and model.scale are used")
    p.add_argument("--seed", type=int, default=0, help="degradation seed (default 0)")
    p.add_argument("--crop", type=int, default=0, help="centre-crop each HR to this size first (default 0: whole image)")
    p.add_argument("--preview", action="store_true", help="also write OUT_DIR/preview.png (contact sheet)")
    p.add_argument("--preview-draws", type=int, default=4, help="degradations per image on the contact sheet (default 4)")
    p.add_argument("--preview-images", type=int, default=4, help="images on the contact sheet (default 4)")
    p.add_argument("--preview-crop", type=int, default=96, help="HR crop shown per image on the sheet (default 96)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default auto)")
    p.set_defaults(func=_degrade)


def _centre_crop(x, size: int):
    h, w = x.shape[-2:]
    size = min(size, h, w)
    t, l = (h - size) // 2, (w - size) // 2
    return x[..., t : t + size, l : l + size]


def degradation_of(recipe):
    """The recipe's degradation section (the Real-ESRGAN defaults when it has none)."""
    from ..data.degrade import DegradationConfig

    return getattr(recipe, "degradation", None) or DegradationConfig()


def contact_sheet(hrs, cfg, scale: int, *, seed: int, draws: int, crop: int, device="cpu"):
    """``(3, H, W)`` sheet: one row per HR image ``(3, h, w)``: the HR crop, then ``draws``
    degraded LRs of it (nearest-upscaled by ``scale`` to the crop's size), 2-px gaps."""
    import torch
    import torch.nn.functional as F

    from ..data.degrade import Degradation, item_key

    crop -= crop % scale
    deg = Degradation(cfg, scale)
    rows = []
    for i, hr in enumerate(hrs):
        x = _centre_crop(hr, crop)
        c = x.shape[-1] - x.shape[-1] % scale
        x = x[..., :c, :c]
        batch = x.unsqueeze(0).expand(draws, -1, -1, -1).contiguous().to(device)
        keys = torch.tensor([item_key(seed, d, i) for d in range(draws)], dtype=torch.int64)
        # one draw per item -> the shared resize choices differ too: degrade item by item
        lrs = [deg(batch[d : d + 1], keys[d : d + 1])[0] for d in range(draws)]
        tiles = [x] + [F.interpolate(lr, scale_factor=scale, mode="nearest")[0].cpu() for lr in lrs]
        row = torch.ones(3, c, (c + 2) * len(tiles) - 2)
        for j, t in enumerate(tiles):
            row[:, :, j * (c + 2) : j * (c + 2) + c] = t
        rows.append(row)
    width = max(r.shape[-1] for r in rows)
    sheet = torch.ones(3, sum(r.shape[-2] + 2 for r in rows) - 2, width)
    y = 0
    for r in rows:
        sheet[:, y : y + r.shape[-2], : r.shape[-1]] = r
        y += r.shape[-2] + 2
    return sheet


def _degrade(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..data.degrade import Degradation, item_key
    from ..data.transforms import mod_crop
    from ..errors import DataError
    from ..imageio import list_images, read_image, write_image
    from ..train.recipe import resolve_recipe

    from rich.console import Console

    err = Console(stderr=True, soft_wrap=True)
    recipe = resolve_recipe(args.recipe)
    cfg = degradation_of(recipe)
    try:
        cfg.validate()
    except ValueError as exc:
        raise DataError(f"{recipe.source}: {exc}") from None
    scale = recipe.model.scale
    src = Path(args.in_dir)
    if not src.is_dir():
        raise DataError(f"{src}: IN_DIR is not a folder")
    files = list_images(src)
    if not files:
        raise DataError(f"{src}: no image files")
    if args.crop and args.crop < scale:
        raise DataError(f"--crop {args.crop} is smaller than the scale {scale}")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    out = Path(args.out_dir)
    deg = Degradation(cfg, scale)
    hrs = []
    for i, f in enumerate(files):
        hr = read_image(f).rgb
        if args.crop:
            hr = _centre_crop(hr, args.crop)
        hr = mod_crop(hr, scale)
        if min(hr.shape[-2:]) < scale:
            err.print(f"skipping {f}: smaller than the scale", highlight=False)
            continue
        keys = torch.tensor([item_key(args.seed, 0, i)], dtype=torch.int64)
        lr, target = deg(hr.unsqueeze(0).to(device), keys)
        write_image(out / "HR" / f"{f.stem}.png", target[0].cpu())
        write_image(out / "LR" / f"X{scale}" / f"{f.stem}.png", lr[0].cpu())
        if len(hrs) < args.preview_images:
            hrs.append(hr)
    err.print(f"wrote {len(files)} pairs to {out}/HR and {out}/LR/X{scale} (recipe {recipe.name}, seed {args.seed})", highlight=False)
    if args.preview:
        sheet = contact_sheet(hrs, cfg, scale, seed=args.seed, draws=args.preview_draws, crop=args.preview_crop, device=device)
        path = write_image(out / "preview.png", sheet)
        err.print(f"wrote {path} ({len(hrs)} images x {args.preview_draws} draws)", highlight=False)
    return 0
