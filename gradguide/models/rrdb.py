"""RRDBNet (ESRGAN) with BasicSR module names, its guidance spec, checkpoint layouts and
architecture entry.

Module names follow BasicSR (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), so BasicSR / Real-ESRGAN
weights load directly; the old ESRGAN and mmsr layouts are converted on load (below; the
official SPSR layout is :mod:`gradguide.spsr`'s). Upsampling is nearest + conv per stage,
as in ESRGAN and SPSR: x2 and x3 use one stage (factor 2 or 3), x4 two, x8 three.

RRDBNet is in the core because the SPSR generator is built on it; the built-in backbones
plugin (``gradguide_backbones``) registers :data:`ARCHITECTURE` like any other.
"""
from __future__ import annotations

import re
from typing import Mapping, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError
from ..layouts import infer_scale
from ..nn.blocks import RRDB, conv3x3, upsample_factors
from ..registry import Architecture, CheckpointLayout, Converted
from ..spec import GuidanceSpec, Tap, even_taps

__all__ = ["RRDBNet", "rrdb_spec", "ARCHITECTURE", "convert_old_trunk", "old_seq_indices", "RDB_KEY"]


class RRDBNet(nn.Module):
    """ESRGAN generator. ``(B, in_nc, H, W) -> (B, out_nc, sH, sW)``."""

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4) -> None:
        super().__init__()
        if scale not in (2, 3, 4, 8):
            raise ValueError(f"RRDBNet supports scale 2, 3, 4 or 8, got scale={scale}")
        self.in_nc, self.out_nc, self.nf, self.nb, self.gc, self.scale = in_nc, out_nc, nf, nb, gc, scale
        self.factors = upsample_factors(scale)
        self.conv_first = conv3x3(in_nc, nf)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = conv3x3(nf, nf)
        for i, _ in enumerate(self.factors, 1):
            setattr(self, f"conv_up{i}", conv3x3(nf, nf))
        self.conv_hr = conv3x3(nf, nf)
        self.conv_last = conv3x3(nf, out_nc)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i, f in enumerate(self.factors, 1):
            up = getattr(self, f"conv_up{i}")
            feat = self.lrelu(up(F.interpolate(feat, scale_factor=f, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

    @property
    def config(self) -> dict:
        return dict(in_nc=self.in_nc, out_nc=self.out_nc, nf=self.nf, nb=self.nb, gc=self.gc, scale=self.scale)


def rrdb_spec(model: RRDBNet, taps: list[int] | None = None) -> GuidanceSpec:
    """Taps after RRDB blocks 5/10/15/20 for nb=23 (rule: :func:`gradguide.spec.even_taps`)."""
    idx = taps if taps is not None else even_taps(model.nb)
    return GuidanceSpec(
        taps=tuple(Tap(f"body.{i}", model.nf) for i in idx),
        replace="conv_last",
        hr_channels=model.nf,
        scale=model.scale,
        lr_feature="conv_body",
        lr_channels=model.nf,
        in_channels=model.in_nc,
        out_channels=model.out_nc,
    )


# --------------------------------------------------------------------------------- layouts
#: one residual dense block conv in the old/mmsr names (``RDB1.conv1``)
RDB_KEY = r"(?:RDB|rdb)([123])\.conv([1-5])"


def _rrdb_shapes(sd: Mapping[str, Tensor], first: str, block_prefix: str) -> tuple[int, int, int]:
    """``(in_nc, nf, nb)`` from the first conv and the body blocks' keys."""
    nf = sd[first].shape[0]
    in_nc = sd[first].shape[1]
    pat = re.compile(re.escape(block_prefix) + r"(\d+)\.")
    nb = len({int(m.group(1)) for k in sd if (m := pat.match(k))})
    return in_nc, nf, nb


def _gc(sd: Mapping[str, Tensor], key: str) -> int:
    return int(sd[key].shape[0]) if key in sd else 32


def _map_rrdb_body(k: str, src_prefix: str, dst_prefix: str, nb: int, conv_suffix: str) -> Optional[str]:
    m = re.match(re.escape(src_prefix) + r"(\d+)\." + RDB_KEY + re.escape(conv_suffix) + r"(weight|bias)$", k)
    if m and int(m.group(1)) < nb:
        i, r, c, p = m.groups()
        return f"{dst_prefix}{i}.rdb{r}.conv{c}.{p}"
    return None


def old_seq_indices(sd: Mapping[str, Tensor], prefix: str) -> list[int]:
    """Indices of conv layers ``{prefix}{i}.weight`` in a flattened Sequential."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    return sorted(int(m.group(1)) for k in sd if (m := pat.match(k)))


def convert_old_trunk(sd: Mapping[str, Tensor], meta: Mapping[str, str], scale: Optional[int], spsr: bool) -> Converted:
    """ESRGAN old layout (``model.0``, ``model.1.sub.N``, upconvs, HR conv(s)) -> RRDBNet.
    With ``spsr`` the trunk is the official SPSR generator's (no last conv)."""
    in_nc, nf, nb1 = _rrdb_shapes(sd, "model.0.weight", "model.1.sub.")
    nb = nb1 - 1  # the last entry of model.1.sub is the LR conv
    gc = _gc(sd, "model.1.sub.0.RDB1.conv1.0.weight")
    top = [i for i in old_seq_indices(sd, "model.") if i >= 2]
    out: dict[str, Tensor] = {}
    # model.2.. = [Upsample, conv, act] * n_up, HR conv, act, (last conv)
    n_up = len(top) - (1 if spsr else 2)
    if n_up < 1:
        raise CheckpointError("old-layout trunk: could not find the upsampling convs")
    s = infer_scale([None] * n_up, meta, scale)
    names = [f"conv_up{u + 1}" for u in range(n_up)] + ["conv_hr"] + ([] if spsr else ["conv_last"])
    idx_name = dict(zip(top, names))
    for k, v in sd.items():
        m = re.match(r"model\.(\d+)\.(weight|bias)$", k)
        if k.startswith("model.1.sub."):
            d = _map_rrdb_body(k, "model.1.sub.", "body.", nb, ".0.")
            if d is None and re.match(rf"model\.1\.sub\.{nb}\.(weight|bias)$", k):
                d = "conv_body." + k.rsplit(".", 1)[1]
            if d is not None:
                out[d] = v
        elif m and m.group(1) == "0":
            out["conv_first." + m.group(2)] = v
        elif m and int(m.group(1)) in idx_name:
            out[f"{idx_name[int(m.group(1))]}.{m.group(2)}"] = v
    cfg = {"in_nc": int(in_nc), "nf": int(nf), "nb": int(nb), "gc": int(gc), "scale": s}
    if not spsr:
        cfg["out_nc"] = int(sd[f"model.{top[-1]}.weight"].shape[0])
    return Converted(cfg, out, {})


def _convert_esrgan_old(sd: Mapping[str, Tensor], meta: Mapping[str, str], scale: Optional[int]) -> Converted:
    return convert_old_trunk(sd, meta, scale, spsr=False)


def _convert_basicsr(sd: Mapping[str, Tensor], meta: Mapping[str, str], scale: Optional[int]) -> Converted:
    in_nc, nf, nb = _rrdb_shapes(sd, "conv_first.weight", "body.")
    if in_nc in (12, 48):
        raise CheckpointError(
            "basicsr-rrdbnet: this is BasicSR's pixel-unshuffle x2/x1 variant (conv_first takes "
            f"{in_nc} channels), which gradguide's RRDBNet does not implement"
        )
    n_up = len([k for k in sd if re.match(r"conv_up\d+\.weight$", k)])
    cfg = {
        "in_nc": int(in_nc), "out_nc": int(sd["conv_last.weight"].shape[0]), "nf": int(nf), "nb": int(nb),
        "gc": _gc(sd, "body.0.rdb1.conv1.weight"), "scale": infer_scale([None] * n_up, meta, scale),
    }
    return Converted(cfg, dict(sd), {})


def _convert_mmsr(sd: Mapping[str, Tensor], meta: Mapping[str, str], scale: Optional[int]) -> Converted:
    in_nc, nf, nb = _rrdb_shapes(sd, "conv_first.weight", "RRDB_trunk.")
    ren = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "upconv3": "conv_up3", "HRconv": "conv_hr"}
    out = {}
    for k, v in sd.items():
        if k.startswith("RRDB_trunk."):
            d = _map_rrdb_body(k, "RRDB_trunk.", "body.", nb, ".")
            if d is None:
                raise CheckpointError(f"mmsr-rrdbnet: unexpected key {k}")
            out[d] = v
        else:
            base, _, p = k.rpartition(".")
            out[f"{ren.get(base, base)}.{p}"] = v
    n_up = len([k for k in out if re.match(r"conv_up\d+\.weight$", k)])
    cfg = {
        "in_nc": int(in_nc), "out_nc": int(sd["conv_last.weight"].shape[0]), "nf": int(nf), "nb": int(nb),
        "gc": _gc(sd, "RRDB_trunk.0.RDB1.conv1.weight"), "scale": infer_scale([None] * n_up, meta, scale),
    }
    return Converted(cfg, out, {})


LAYOUTS = (
    CheckpointLayout(
        "esrgan-old", _convert_esrgan_old, keys=("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"),
        absent=("b_fea_conv.0.weight",), priority=40, description="ESRGAN original (model.0, model.1.sub.N)",
    ),
    CheckpointLayout(
        "mmsr-rrdbnet", _convert_mmsr, keys=("conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight"),
        priority=30, description="mmsr ESRGAN (RRDB_trunk, trunk_conv)",
    ),
    CheckpointLayout(
        "basicsr-rrdbnet", _convert_basicsr, keys=("conv_first.weight", "body.0.rdb1.conv1.weight"),
        priority=30, description="BasicSR / Real-ESRGAN RRDBNet",
    ),
)

ARCHITECTURE = Architecture(
    name="rrdbnet",
    factory=RRDBNet,
    classes=(RRDBNet,),
    spec=rrdb_spec,
    config_of=lambda m: m.config,
    description="ESRGAN RRDBNet (BasicSR names; ESRGAN-old, mmsr and SPSR layouts load)",
    scales=(2, 3, 4, 8),
    scale_arg="scale",
    layouts=LAYOUTS,
)
