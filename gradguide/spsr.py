"""The paper-exact SPSR generator: RRDBNet + gradient branch + HR fusion, and the
official checkpoint layout.

``create_spsr(nf=64, nb=23, gc=32, scale=4)`` builds the architecture of the official
implementation (taps after RRDB 5/10/15/20, RRDB gradient blocks at 2nf with gc=32,
RRDB fusion at 2nf); the official checkpoint layout (``spsr-official``, below) loads into
it through :func:`gradguide.load`, reproducing the reference outputs. It is exactly
``wrap(RRDBNet(...), fusion="paper")``, recorded as the ``"spsr"`` architecture
(:data:`ARCHITECTURE`).

Taps for other ``nb``: :func:`gradguide.spec.even_taps` (``n = min(4, nb)`` taps after
blocks ``k * (nb // n)``, k = 1..n).
"""
from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .models.rrdb import RDB_KEY, RRDBNet, convert_old_trunk, old_seq_indices, rrdb_spec
from .registry import Architecture, CheckpointLayout, Converted
from .spec import even_taps
from .wrap import GuidedSR, wrap

__all__ = ["create_spsr", "SPSR_BRANCH_GC", "spsr_to_official", "ARCHITECTURE"]

#: the official code builds the branch and fusion RRDBs with a fixed growth of 32
#: (``wrap``'s ``"rrdb"`` block, whatever ``gc`` the trunk uses)
SPSR_BRANCH_GC = 32


def create_spsr(*, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4, in_nc: int = 3, out_nc: int = 3) -> GuidedSR:
    """Build the SPSR generator. ``forward(lr) -> SROutput(sr, grad, lr_grad)``."""
    backbone = RRDBNet(in_nc=in_nc, out_nc=out_nc, nf=nf, nb=nb, gc=gc, scale=scale)
    cfg = {"nf": nf, "nb": nb, "gc": gc, "scale": scale, "in_nc": in_nc, "out_nc": out_nc}
    return wrap(backbone, rrdb_spec(backbone), fusion="paper", branch_block="rrdb", fusion_block="rrdb",
                record_as=("spsr", cfg))


# ------------------------------------------------------------------ the official layout
def _convert_spsr_official(sd: Mapping[str, Tensor], meta: Mapping[str, str], scale: Optional[int]) -> Converted:
    trunk = {k: v for k, v in sd.items() if k.startswith("model.")}
    cfg, out, ignored = convert_old_trunk(trunk, meta, scale, spsr=True)
    ignored = dict(ignored)
    out = {"backbone." + k: v for k, v in out.items()}
    nb, n_up = cfg["nb"], len([k for k in out if re.match(r"backbone\.conv_up\d+\.weight$", k)])
    cfg["out_nc"] = int(sd["f_HR_conv1.0.weight"].shape[0])
    # branch
    stage_pat = re.compile(r"b_block_(\d+)\." + RDB_KEY + r"\.0\.(weight|bias)$")
    bmod = old_seq_indices(sd, "b_module.")
    bmod_names = {i: f"branch.up.{u}.conv" for u, i in enumerate(bmod[:n_up])}
    if len(bmod) != n_up + 2:
        raise CheckpointError(f"spsr-official: b_module has {len(bmod)} convs, expected {n_up + 2}")
    bmod_names[bmod[n_up]] = "branch.hr_conv0"
    bmod_names[bmod[n_up + 1]] = "branch.hr_conv1"
    simple = {
        "b_fea_conv.0": "branch.embed",
        "b_LR_conv.0": "branch.lr_conv",
        "conv_w.0": "branch.to_grad",
        "HR_conv1_new.0": "fusion.proj",
        "f_concat.0": "fusion.reduce",
        "f_HR_conv0.0": "fusion.hr_conv0",
        "f_HR_conv1.0": "fusion.hr_conv1",
    }
    hr_idx = max(i for i in old_seq_indices(sd, "model."))
    for k, v in sd.items():
        if k.startswith("model."):
            continue
        base, _, p = k.rpartition(".")
        if base in simple:
            out[f"{simple[base]}.{p}"] = v
        elif m := stage_pat.match(k):
            s, r, c, p2 = m.groups()
            out[f"branch.stages.{int(s) - 1}.block.rdb{r}.conv{c}.{p2}"] = v
        elif m := re.match(r"b_concat_(\d+)\.0\.(weight|bias)$", k):
            out[f"branch.stages.{int(m.group(1)) - 1}.reduce.{m.group(2)}"] = v
        elif m := re.match(r"f_block\." + RDB_KEY + r"\.0\.(weight|bias)$", k):
            r, c, p2 = m.groups()
            out[f"fusion.block.rdb{r}.conv{c}.{p2}"] = v
        elif m := re.match(r"b_module\.(\d+)\.(weight|bias)$", k):
            if int(m.group(1)) in bmod_names:
                out[f"{bmod_names[int(m.group(1))]}.{m.group(2)}"] = v
        elif m := re.match(r"HR_conv0_new\.0\.(weight|bias)$", k):
            twin = sd.get(f"model.{hr_idx}.{m.group(1)}")
            if twin is None or not torch.equal(twin, v):
                raise CheckpointError(f"spsr-official: {k} differs from model.{hr_idx}.{m.group(1)}, which it should alias")
            ignored[k] = f"alias of model.{hr_idx}.{m.group(1)} (same tensor)"
        elif k in ("get_g_nopadding.weight_h", "get_g_nopadding.weight_v"):
            expect = _official_grad_kernel(k.endswith("_h"))
            if v.shape != expect.shape or not torch.equal(v.float(), expect):
                raise CheckpointError(f"spsr-official: {k} is not the fixed [-1, 0, 1] kernel gradguide implements")
            ignored[k] = "fixed gradient kernel, verified equal to gradguide.ops.gradient_map's"
    n_taps = len({int(m.group(1)) for k in sd if (m := re.match(r"b_concat_(\d+)\.", k))})
    if n_taps != len(even_taps(nb)):
        raise CheckpointError(f"spsr-official: {n_taps} branch stages, but nb={nb} implies {len(even_taps(nb))} taps")
    return Converted(cfg, out, ignored)


def _official_grad_kernel(horizontal: bool) -> Tensor:
    k = torch.zeros(1, 1, 3, 3)
    if horizontal:
        k[0, 0, 1, 0], k[0, 0, 1, 2] = -1.0, 1.0
    else:
        k[0, 0, 0, 1], k[0, 0, 2, 1] = -1.0, 1.0
    return k


def spsr_to_official(model: nn.Module) -> dict[str, Tensor]:
    """The state dict of a :func:`~gradguide.spsr.create_spsr` model in the official SPSR
    key layout (the inverse of the ``spsr-official`` layout), e.g. to run it with the
    reference code or to build conformance fixtures."""
    if not isinstance(model, GuidedSR) or model.architecture[0] != "spsr":
        raise CheckpointError("spsr_to_official: expects a model built by create_spsr")
    bb = model.backbone
    n_up = len(bb.factors)
    trunk_idx = {f"conv_up{u + 1}": 3 + 3 * u for u in range(n_up)}
    trunk_idx["conv_hr"] = 2 + 3 * n_up
    bmod = {f"branch.up.{u}.conv": 1 + 3 * u for u in range(n_up)}
    bmod["branch.hr_conv0"] = 3 * n_up
    bmod["branch.hr_conv1"] = 3 * n_up + 2
    simple = {
        "branch.embed": "b_fea_conv.0", "branch.lr_conv": "b_LR_conv.0", "branch.to_grad": "conv_w.0",
        "fusion.proj": "HR_conv1_new.0", "fusion.reduce": "f_concat.0", "fusion.hr_conv0": "f_HR_conv0.0",
        "fusion.hr_conv1": "f_HR_conv1.0", "backbone.conv_first": "model.0",
        "backbone.conv_body": f"model.1.sub.{bb.nb}",
    }
    out: dict[str, Tensor] = {}
    for k, v in model.state_dict().items():
        base, _, p = k.rpartition(".")
        if base in simple:
            out[f"{simple[base]}.{p}"] = v
        elif base.startswith("backbone.") and base[len("backbone."):] in trunk_idx:
            i = trunk_idx[base[len("backbone."):]]
            out[f"model.{i}.{p}"] = v
            if base == "backbone.conv_hr":
                out[f"HR_conv0_new.0.{p}"] = v.clone()
        elif base in bmod:
            out[f"b_module.{bmod[base]}.{p}"] = v
        elif m := re.match(r"backbone\.body\.(\d+)\.rdb(\d)\.conv(\d)$", base):
            out[f"model.1.sub.{m.group(1)}.RDB{m.group(2)}.conv{m.group(3)}.0.{p}"] = v
        elif m := re.match(r"branch\.stages\.(\d+)\.block\.rdb(\d)\.conv(\d)$", base):
            out[f"b_block_{int(m.group(1)) + 1}.RDB{m.group(2)}.conv{m.group(3)}.0.{p}"] = v
        elif m := re.match(r"branch\.stages\.(\d+)\.reduce$", base):
            out[f"b_concat_{int(m.group(1)) + 1}.0.{p}"] = v
        elif m := re.match(r"fusion\.block\.rdb(\d)\.conv(\d)$", base):
            out[f"f_block.RDB{m.group(1)}.conv{m.group(2)}.0.{p}"] = v
        else:
            raise CheckpointError(f"spsr_to_official: no official name for {k}")
    out["get_g_nopadding.weight_h"] = _official_grad_kernel(True)
    out["get_g_nopadding.weight_v"] = _official_grad_kernel(False)
    return out


ARCHITECTURE = Architecture(
    name="spsr",
    factory=create_spsr,
    description="the paper-exact SPSR generator (RRDBNet + gradient branch + HR fusion)",
    scales=(2, 3, 4, 8),
    scale_arg="scale",
    guided_from=("rrdbnet", "paper"),
    layouts=(
        CheckpointLayout(
            "spsr-official", _convert_spsr_official, keys=("model.0.weight", "b_fea_conv.0.weight", "f_HR_conv1.0.weight"),
            priority=50, description="official SPSR generator",
        ),
    ),
)
