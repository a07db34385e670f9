"""The side-by-side benches not covered by ``bench/gpu_check.sh --dry`` run in their
quick form: exercised (every variant, both figures printed), never timed."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


def test_train_step_compare_quick_runs_every_cpu_variant(capsys):
    import train_step_compare

    variants = ["fp32", "channels_last", "reuse_real", "fused_adam", "channels_last+reuse_real+fused_adam"]
    assert set(variants) <= set(train_step_compare.VARIANTS)
    assert train_step_compare.main(["--quick", "--steps", "1", "--batch", "2", "--variants", ";".join(variants)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in variants}
    assert set(rows) == set(variants)
    assert rows["fp32"][2] == "1.00x"
    # the first step's losses: reusing D(HR) and fusing Adam change nothing before the first update
    for name in ("reuse_real", "fused_adam"):
        assert rows[name][3:5] == ["0.0e+00,", "0.0e+00"], rows[name]


def test_optimizer_step_quick(capsys):
    import optimizer_step

    assert optimizer_step.main(["--quick"]) in (0, None)
    out = capsys.readouterr().out
    assert "fused" in out and "foreach" in out


def test_train_step_profile_splits_a_step_into_phases(capsys):
    import train_step

    train_step.main(["--set", "model.backbone_config={nf=8, nb=20, gc=4}", "--peak-n", "256", "--lr-size", "8",
                     "--batch", "2", "--steps", "1", "--profile", "3"])
    out = capsys.readouterr().out
    assert "where one step's time goes" in out
    for phase in ("G forward", "G loss", "D loss", "Adam step G", "Adam step D_I", "Adam step D_GM", "backward passes"):
        assert phase in out, phase
    assert "convolution" in out  # the operator table


def test_edge_pad_cost_quick_prints_both_settings(capsys):
    import edge_pad_cost

    edge_pad_cost.main(["--quick", "--pad", "2"])
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 16 ") or line.startswith("| 24 ")]
    assert len(rows) == 2 and all(float(r[1]) > 0 and float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
    assert "edge_pad 2 (s)" in out
