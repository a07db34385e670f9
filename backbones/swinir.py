"""SwinIR (Liang et al. 2021), classical (pixel-shuffle) and lightweight (direct
pixel-shuffle) variants, built from timm's ``SwinTransformerBlock``.

timm provides the Swin block (window attention with relative position bias, shifted
windows with a dynamic mask, MLP, DropPath), maintained and tested upstream; this file
only adds SwinIR's residual Swin groups (RSTB) and its convolutional head and tail.
Module and parameter names are those of the official SwinIR (and BasicSR) code
(``layers.I.residual_group.blocks.J.attn.qkv``...), so its checkpoints load; their
``relative_position_index`` and ``attn_mask`` buffers are recomputed, not read.

The input is reflect-padded to a multiple of the window size and the output cropped,
as in the reference implementation. RSTBs work on ``(B, C, H, W)`` tensors, so every
``layers.I`` output is a tappable feature map.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradguide.plugin import (
    Architecture, CheckpointLayout, Converted, GuidanceSpec, Tap, count_indexed, even_taps, infer_scale, shuffle_factor,
)

from .common import Upsample, upsample_stages
from .edsr import DIV2K_MEAN, mean_buffer

__all__ = ["SwinIR", "RSTB", "swinir_spec", "backbone_entries"]


class _BasicLayer(nn.Module):
    """A stack of Swin blocks on ``(B, H, W, C)``; named like SwinIR's ``BasicLayer``."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, drop_path: Sequence[float]) -> None:
        super().__init__()
        # timm is imported here, not at module level: listing the backbones must stay cheap
        from timm.models.swin_transformer import SwinTransformerBlock

        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim, input_resolution=(window_size, window_size), num_heads=num_heads, window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2, always_partition=True, dynamic_mask=True,
                mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=drop_path[i],
            )
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer block: ``x + conv(swin_blocks(x))``. Shape: ``(B, C, H, W) -> same``
    (H, W multiples of the window size)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, drop_path: Sequence[float]) -> None:
        super().__init__()
        self.residual_group = _BasicLayer(dim, depth, num_heads, window_size, mlp_ratio, drop_path)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.residual_group(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.conv(y) + x


class _PatchEmbed(nn.Module):
    """SwinIR's patch embedding at patch size 1: a LayerNorm over channels (``patch_embed.norm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SwinIR(nn.Module):
    """SwinIR for SR. ``(B, in, H, W) -> (B, out, sH, sW)``, any H, W.

    ``upsampler="pixelshuffle"`` (classical SR: ``conv_before_upsample``, ``upsample``,
    ``conv_last``) or ``"pixelshuffledirect"`` (lightweight: one conv + pixel shuffle).
    """

    def __init__(
        self, in_chans: int = 3, out_chans: int = 3, embed_dim: int = 180, depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6), window_size: int = 8, mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.1, upscale: int = 4, img_range: float = 1.0, upsampler: str = "pixelshuffle",
        num_feat: int = 64, rgb_mean: tuple = DIV2K_MEAN,
    ) -> None:
        super().__init__()
        if upsampler not in ("pixelshuffle", "pixelshuffledirect"):
            raise ValueError(f"SwinIR upsampler must be 'pixelshuffle' or 'pixelshuffledirect', got {upsampler!r}")
        if len(depths) != len(num_heads):
            raise ValueError("SwinIR: depths and num_heads must have the same length")
        self.in_chans, self.out_chans, self.embed_dim, self.depths, self.num_heads = in_chans, out_chans, embed_dim, tuple(depths), tuple(num_heads)
        self.window_size, self.mlp_ratio, self.drop_path_rate, self.upscale = window_size, mlp_ratio, drop_path_rate, upscale
        self.img_range, self.upsampler, self.num_feat, self.rgb_mean = img_range, upsampler, num_feat, tuple(rgb_mean)
        self.register_buffer("mean", mean_buffer(rgb_mean, in_chans), persistent=False)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = _PatchEmbed(embed_dim)
        n = sum(depths)
        dpr = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        self.layers = nn.ModuleList()
        for i, (d, h) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(RSTB(embed_dim, d, h, window_size, mlp_ratio, dpr[start : start + d]))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, out_chans, 3, 1, 1)
        else:
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, out_chans * upscale**2, 3, 1, 1), nn.PixelShuffle(upscale))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            from timm.layers import trunc_normal_

            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def scale(self) -> int:
        return self.upscale

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ws = self.window_size
        x = F.pad(x, (0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws), mode="reflect")
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            x = self.upsample(x)
        x = x / self.img_range + self.mean
        return x[..., : h * self.upscale, : w * self.upscale]

    @property
    def config(self) -> dict:
        return dict(in_chans=self.in_chans, out_chans=self.out_chans, embed_dim=self.embed_dim, depths=list(self.depths),
                    num_heads=list(self.num_heads), window_size=self.window_size, mlp_ratio=self.mlp_ratio,
                    drop_path_rate=self.drop_path_rate, upscale=self.upscale, img_range=self.img_range,
                    upsampler=self.upsampler, num_feat=self.num_feat, rgb_mean=list(self.rgb_mean))


def swinir_spec(model: SwinIR) -> GuidanceSpec:
    """Taps after RSTBs (:func:`gradguide.spec.even_taps`); HR fusion replaces ``conv_last``
    (classical variant only), LR fusion adds to ``conv_after_body``."""
    classical = model.upsampler == "pixelshuffle"
    return GuidanceSpec(
        taps=tuple(Tap(f"layers.{i}", model.embed_dim) for i in even_taps(len(model.layers))),
        replace="conv_last" if classical else None, hr_channels=model.num_feat if classical else None,
        scale=model.upscale, lr_feature="conv_after_body", lr_channels=model.embed_dim,
        in_channels=model.in_chans, out_channels=model.out_chans,
    )


def _convert(sd: dict, meta: dict, scale: Optional[int]) -> Converted:
    ed = int(sd["conv_first.weight"].shape[0])
    n_layers = count_indexed(sd, "layers.")
    depths = [count_indexed(sd, f"layers.{i}.residual_group.blocks.") for i in range(n_layers)]
    heads = [int(sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1]) for i in range(n_layers)]
    ws = (int(round(sd["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"].shape[0] ** 0.5)) + 1) // 2
    mlp_ratio = sd["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / ed
    if "conv_before_upsample.0.weight" in sd:
        nf = int(sd["conv_before_upsample.0.weight"].shape[0])
        s = infer_scale(upsample_stages(sd, "upsample.", nf), meta, scale)
        upsampler, out_ch = "pixelshuffle", int(sd["conv_last.weight"].shape[0])
    elif "upsample.0.weight" in sd:
        nf, upsampler = 64, "pixelshuffledirect"
        out_ch = 3
        s = infer_scale([shuffle_factor(sd["upsample.0.weight"].shape[0], out_ch)], meta, scale)
    else:
        raise ValueError("only the classical (pixelshuffle) and lightweight (pixelshuffledirect) SwinIR SR variants are supported")
    ignored = {}
    out = {}
    for k, v in sd.items():
        if k.endswith("attn.relative_position_index"):
            ignored[k] = "recomputed from the window size (timm)"
        elif k.endswith(".attn_mask"):
            ignored[k] = "shifted-window mask, recomputed for each input size"
        else:
            out[k] = v
    cfg = dict(in_chans=int(sd["conv_first.weight"].shape[1]), out_chans=out_ch, embed_dim=ed, depths=depths, num_heads=heads,
               window_size=ws, mlp_ratio=float(mlp_ratio), upscale=int(s), upsampler=upsampler, num_feat=nf)
    return Converted(cfg, out, ignored)


LAYOUTS = (
    CheckpointLayout("swinir", _convert, keys=("conv_first.weight", "layers.0.residual_group.blocks.0.attn.qkv.weight"),
                     priority=20, description="SwinIR official / BasicSR (classical and lightweight SR)"),
)


def backbone_entries() -> list[Architecture]:
    return [
        Architecture(
            name="swinir", factory=SwinIR, classes=(SwinIR,), spec=swinir_spec, config_of=lambda m: m.config, scales=(2, 3, 4, 8),
            description="SwinIR classical/lightweight SR (timm Swin blocks; official names load)", scale_arg="upscale",
            layouts=LAYOUTS,
        )
    ]
