"""Render an :class:`~gradguide.eval.evaluate.EvalReport`: rich tables, JSON, CSV."""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Union

from .evaluate import EvalReport
from .protocol import LOWER_IS_BETTER, METRICS, SIGNED

__all__ = ["rich_tables", "print_report", "write_json", "write_csv"]

_FMT = {"PI": "{:.4f}", "LPIPS": "{:.4f}", "PSNR": "{:.3f}", "SSIM": "{:.4f}", "NIQE": "{:.4f}", "GMSD": "{:.4f}", "GradL1": "{:.4f}",
        "CIEDE2000": "{:.4f}", "PSNR-RGB": "{:.3f}", "PSNR-frame8": "{:.3f}", "PSNR-inner8": "{:.3f}",
        "Bias-frame8": "{:+.3f}"}


def rich_tables(report: EvalReport) -> list:
    """One ``rich.table.Table`` per dataset, laid out as the paper's Table 1:
    rows are metrics, columns are methods; missing values are ``n/a`` with a note."""
    from rich.table import Table

    tables = []
    p = report.protocol
    for ds in report.datasets:
        t = Table(title=f"{ds} (x{p.scale})")
        t.add_column("Dataset")
        t.add_column("Metric")
        for m in report.methods:
            t.add_column(m, justify="right")
        per = report.results[ds]
        means = {m: per[m].mean for m in report.methods}
        for i, metric in enumerate(METRICS):
            arrow = "→0" if metric in SIGNED else "↓" if metric in LOWER_IS_BETTER else "↑"
            vals = []
            for m in report.methods:
                v = means[m][metric]
                vals.append("n/a" if v is None else _FMT[metric].format(v))
            t.add_row(ds if i == 0 else "", f"{metric} {arrow}", *vals)
        tables.append(t)
    return tables


def print_report(report: EvalReport, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    for t in rich_tables(report):
        console.print(t)
    p = report.protocol
    console.print(
        f"protocol: x{p.scale}, LR by MATLAB bicubic (uint8), metrics on uint8-rounded images, "
        f"PSNR/SSIM on Y (BT.601, rgb2ycbcr), border crop {p.crop} px; full record in --json/--csv",
        highlight=False,
    )
    n_img = {ds: max(len(r.images) for r in report.results[ds].values()) for ds in report.datasets}
    console.print("images: " + ", ".join(f"{ds} {n}" for ds, n in n_img.items()), highlight=False)
    for n in report.notes:
        console.print(f"[dim]note:[/dim] {escape(n)}", highlight=False)
    for ds in report.datasets:
        for m, r in report.results[ds].items():
            for n in dict.fromkeys(r.notes):
                console.print(f"[dim]note ({escape(ds)}, {escape(m)}):[/dim] {escape(n)}", highlight=False)


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(report: EvalReport, path: Union[str, os.PathLike]) -> Path:
    """Everything: protocol, notes, per-dataset means and per-image values (null = missing)."""
    return _atomic_write(Path(path), json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False))


def _finite(o):
    """NaN/inf (e.g. PSNR of identical images) become null: JSON has no such numbers."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_csv(report: EvalReport, path: Union[str, os.PathLike]) -> Path:
    """Long table: ``dataset, method, image, <metrics...>, error``; ``image = MEAN`` rows
    hold the means. Protocol fields are prepended as ``# key: value`` comment lines."""
    import io

    buf = io.StringIO()
    for k, v in report.protocol.to_dict().items():
        buf.write(f"# {k}: {v}\n")
    for n in report.notes:
        buf.write(f"# note: {n}\n")
    w = csv.writer(buf)
    w.writerow(["dataset", "method", "image", *METRICS, "error"])
    for ds in report.datasets:
        for m, r in report.results[ds].items():
            for im in r.images:
                w.writerow([ds, m, im.name, *[_cell(im.metrics.get(k)) for k in METRICS], im.error or ""])
            mean = r.mean
            w.writerow([ds, m, "MEAN", *[_cell(mean[k]) for k in METRICS], ""])
    return _atomic_write(Path(path), buf.getvalue())


def _cell(v) -> str:
    return "" if v is None else repr(float(v))
