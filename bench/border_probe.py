"""The bundled model's image border on one test set, side by side in one run.

    python bench/border_probe.py [--data-root ../shared/data] [--set Set5] [--pad 8] [--extra NAME=FILE ...]

Rows: bicubic, the bundled model as shipped (its ``edge_pad``), the same weights with
``edge_pad = 0`` (the convolutions' zero padding at the image's edge, as trained), and
those on an LR pre-padded by ``--pad`` px (reflect, replicate, and
symmetric: the mirror that includes the edge pixel, which is what MATLAB's kernel assumed
when it made the LR; the output is cropped back), and any ``--extra`` generator files (say, a fine-tune). Columns:
PSNR-Y (protocol crop), PSNR-frame8, PSNR-inner8 and Bias-frame8 of ``gradguide.evaluate``,
the frame's and the interior's gain over bicubic, and the edge cost on the same pixels
(:func:`gradguide.eval.border_study`: the frame of the image less a 64-px margin, PSNR-Y
inside the whole image minus PSNR-Y as the image's edge; mean over images). Prints a
markdown table.
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import gradguide
from gradguide.eval import border_study
from gradguide.types import as_output

REPO = Path(__file__).resolve().parents[1]


class PrePad(nn.Module):
    """``model`` on its input padded by ``pad`` px (``mode`` of ``F.pad``), output cropped back."""

    def __init__(self, model: nn.Module, pad: int, mode: str) -> None:
        super().__init__()
        self.model, self.pad, self.mode, self.scale = model, int(pad), mode, model.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, s = self.pad, self.scale
        if self.mode == "symmetric":
            x = torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], -1)
            x = torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], -2)
        else:
            x = F.pad(x, (p, p, p, p), mode=self.mode)
        sr = as_output(self.model(x)).sr
        return sr[..., p * s: sr.shape[-2] - p * s, p * s: sr.shape[-1] - p * s]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--set", default="Set5")
    ap.add_argument("--pad", type=int, default=8)
    ap.add_argument("--extra", nargs="*", default=[], metavar="NAME=FILE")
    args = ap.parse_args(argv)
    shipped = gradguide.load("default").eval()
    net = gradguide.load("default").eval()
    net.edge_pad = 0  # the network as trained: the convolutions' zeros at the image's edge
    models: dict = {"bicubic": "bicubic", f"default as shipped (edge_pad {shipped.edge_pad})": shipped,
                    "default, edge_pad 0": net,
                    f"edge_pad 0, LR reflect-padded {args.pad}": PrePad(net, args.pad, "reflect"),
                    f"edge_pad 0, LR replicate-padded {args.pad}": PrePad(net, args.pad, "replicate"),
                    f"edge_pad 0, LR symmetric-padded {args.pad}": PrePad(net, args.pad, "symmetric")}
    for e in args.extra:
        name, _, path = e.partition("=")
        models[name] = gradguide.load(path).eval()
    rep = gradguide.evaluate(models, [Path(args.data_root) / "test" / args.set], scale=4,
                             metrics=["PSNR", "PSNR-frame8", "PSNR-inner8", "Bias-frame8"], device="cpu")
    res = rep.results[rep.datasets[0]]
    cost = border_study(models, Path(args.data_root) / "test" / args.set, 4)
    b = res["bicubic"].mean
    print(f"{args.set}, x4, {platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| method | PSNR-Y | PSNR-frame8 | PSNR-inner8 | Bias-frame8 | frame gain | inner gain | edge cost |")
    print("|---|---|---|---|---|---|---|---|")
    for name in models:
        m = res[name].mean
        print(f"| {name} | {m['PSNR']:.3f} | {m['PSNR-frame8']:.3f} | {m['PSNR-inner8']:.3f} | {m['Bias-frame8']:+.3f} | "
              f"{m['PSNR-frame8'] - b['PSNR-frame8']:+.3f} | {m['PSNR-inner8'] - b['PSNR-inner8']:+.3f} | "
              f"{sum(c.cost for c in cost[name].values()) / len(cost[name]):.3f} |")


if __name__ == "__main__":
    main()
