"""ONNX export with dynamic height and width, checked against onnxruntime.

``export_onnx(model, "out.onnx")`` traces the model on a small input, marks batch,
height and width dynamic, and then runs onnxruntime on a random input of a *different*
size than the traced one (so a shape baked into the graph shows up as an error or a
large difference) and reports the largest absolute difference to PyTorch.

Only the SR image is exported (output ``sr``) unless ``with_grad=True`` adds the
gradient branch's map (output ``grad``). The TorchScript-based exporter is used by
default: it handles the hook-based :class:`gradguide.wrap.GuidedSR` with dynamic
shapes; ``dynamo=True`` selects torch.export-based exporter instead.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .tiling import InferenceError, split_output

__all__ = ["OnnxExportReport", "export_onnx", "check_onnx_parity", "SROnly"]


class SROnly(nn.Module):
    """Adapter exporting ``sr`` (and ``grad`` if asked) from any SR model."""

    def __init__(self, model: nn.Module, with_grad: bool = False) -> None:
        super().__init__()
        self.model = model
        self.with_grad = bool(with_grad)

    def forward(self, lr: Tensor):
        sr, grad = split_output(self.model(lr))
        if self.with_grad:
            if grad is None:
                raise InferenceError("--with-grad: the model returns no gradient map")
            return sr, grad
        return sr


@dataclass
class OnnxExportReport:
    path: Path
    outputs: tuple[str, ...]
    opset: int
    check_shape: tuple[int, int, int, int]
    max_abs_error: dict[str, float]


def check_onnx_parity(model: nn.Module, path: Union[str, os.PathLike], x: Tensor, *, with_grad: bool = False) -> dict[str, float]:
    """Largest absolute difference between onnxruntime and PyTorch on ``x``, per output."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        sr, grad = split_output(model(x))
    refs = {"sr": sr} if not with_grad else {"sr": sr, "grad": grad}
    out = {}
    for (name, ref), arr in zip(refs.items(), got):
        if tuple(arr.shape) != tuple(ref.shape):
            raise InferenceError(f"{path}: onnxruntime output {name} has shape {arr.shape}, PyTorch {tuple(ref.shape)}")
        out[name] = float(np.abs(arr - ref.float().numpy()).max())
    return out


def export_onnx(
    model: nn.Module,
    path: Union[str, os.PathLike],
    *,
    with_grad: bool = False,
    opset: int = 17,
    trace_size: int = 32,
    check_size: tuple[int, int] = (40, 52),
    dynamo: bool = False,
    check: bool = True,
    seed: int = 0,
) -> OnnxExportReport:
    """Export ``model`` (fp32, CPU, eval) to ONNX with dynamic batch, height and width.

    Args:
        model: returns a Tensor or ``SROutput``.
        path: the ``.onnx`` file to write (parent folders created).
        with_grad: also export the gradient map as output ``grad``.
        trace_size: side of the random input used for tracing.
        check_size: ``(H, W)`` of the random input used for the parity check; keep it
            different from ``trace_size`` so baked-in shapes are caught.
        check: run the onnxruntime parity check (needs ``onnxruntime``).

    Returns:
        an :class:`OnnxExportReport` with the maximum absolute error per output.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model = model.to(device="cpu", dtype=torch.float32).eval()
    wrapper = SROnly(model, with_grad=with_grad).eval()
    names = ("sr", "grad") if with_grad else ("sr",)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, trace_size, trace_size, generator=g)
    axes = {"lr": {0: "batch", 2: "height", 3: "width"}}
    for n in names:
        axes[n] = {0: "batch", 2: "out_height", 3: "out_width"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shape checks in Python
            with torch.no_grad():
                if dynamo:
                    h, w = torch.export.Dim("height", min=8), torch.export.Dim("width", min=8)
                    torch.onnx.export(wrapper, (x,), str(p), input_names=["lr"], output_names=list(names), opset_version=opset,
                                      dynamo=True, dynamic_shapes={"lr": {2: h, 3: w}})
                else:
                    torch.onnx.export(wrapper, (x,), str(p), input_names=["lr"], output_names=list(names), opset_version=opset,
                                      dynamo=False, dynamic_axes=axes, do_constant_folding=True)
    except InferenceError:
        raise
    except Exception as exc:
        raise InferenceError(f"{p}: ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    errs: dict[str, float] = {}
    cx = torch.rand(1, 3, *check_size, generator=g)
    if check:
        errs = check_onnx_parity(model, p, cx, with_grad=with_grad)
    return OnnxExportReport(path=p, outputs=names, opset=opset, check_shape=tuple(cx.shape), max_abs_error=errs)
