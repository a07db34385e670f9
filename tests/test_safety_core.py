"""Issue 9, failures 2-5 reproduced end to end (the fixes live in the core: checkpoints
built on the meta device first, non-finite weights reported at load, built-ins
registered before any plugin, plugin exceptions including SystemExit isolated).

2 a 1.2 MB safetensors declaring nf=4096, nb=200 grew past 23 GB; 3 a plugin named
``aaa_dup`` took over ``rrdbnet`` and ``quickstart``; 4 a plugin's ``sys.exit()`` at
import killed every command; 5 NaN weights loaded with no warning.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import textwrap
import warnings

import pytest
import torch

import gradguide
from gradguide import plugins
from gradguide.errors import CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")


def _vm_data() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_small_file_cannot_claim_a_huge_architecture(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = gradguide.create_spsr(nf=4, nb=1, gc=4, scale=4)
    cfg = {"nf": 4096, "nb": 200, "gc": 32, "scale": 4, "in_nc": 3, "out_nc": 3}
    meta = {"format": "gradguide", "gradguide.arch": "spsr", "gradguide.config": json.dumps(cfg), "scale": "4"}
    p = tmp_path / "claims.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(p), metadata=meta)
    assert p.stat().st_size < 2_000_000
    old = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (_vm_data() + (512 << 20), old[1]))  # 512 MiB more, at most
    try:
        with pytest.raises(CheckpointError) as ei:
            gradguide.load(p)
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, old)
    msg = str(ei.value)
    assert str(p) in msg and "\n" not in msg


def test_non_finite_weights_are_reported_at_load(tmp_path):
    torch.manual_seed(0)
    net = gradguide.create_spsr(nf=4, nb=1, gc=4, scale=2)
    with torch.no_grad():
        net.backbone.conv_first.weight[0, 0, 0, 0] = float("nan")
    p = gradguide.save(net, tmp_path / "nan.safetensors")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gradguide.load(p)
    msgs = [str(w.message) for w in caught]
    assert any(str(p) in m and "non-finite" in m for m in msgs), msgs


_HIJACK = textwrap.dedent(
    """
    from pathlib import Path
    import torch
    from gradguide.plugin import Architecture, RecipeEntry, hookimpl

    class Fake(torch.nn.Module):
        scale = 4
        def forward(self, x):
            return x

    @hookimpl
    def gradguide_backbones():
        return [Architecture(name="rrdbnet", factory=lambda **kw: Fake(), classes=(Fake,), spec=None, description="hijack")]

    @hookimpl
    def gradguide_recipes():
        return [RecipeEntry(name="quickstart", path=Path(__file__).with_name("evil.toml"), description="hijack")]
    """
)

_EXITS = "import sys\nsys.exit(3)\n"


@pytest.fixture
def hostile_plugins(tmp_path, monkeypatch):
    """Two installed plugins: ``aaa_dup`` (sorts before ``builtin_*``) registering
    ``rrdbnet`` and ``quickstart``, and ``bad_exit`` calling ``sys.exit()`` on import."""
    import importlib.metadata as md

    (tmp_path / "aaa_dup_plugin.py").write_text(_HIJACK)
    (tmp_path / "evil.toml").write_text('name = "evil"\n[train]\niterations = 1\n')
    (tmp_path / "bad_exit_plugin.py").write_text(_EXITS)
    monkeypatch.syspath_prepend(str(tmp_path))
    real = md.entry_points

    def fake(group=None, **kw):
        eps = list(real(group=group, **kw))
        if group == plugins.ENTRY_POINT_GROUP:
            eps += [md.EntryPoint("aaa_dup", "aaa_dup_plugin", group), md.EntryPoint("bad_exit", "bad_exit_plugin", group)]
        return eps

    monkeypatch.setattr(md, "entry_points", fake)
    pm, problems = plugins.new_plugin_manager()
    with plugins.use_plugin_manager(pm, problems):
        yield
    for m in ("aaa_dup_plugin", "bad_exit_plugin"):
        sys.modules.pop(m, None)


def test_a_plugin_cannot_take_over_builtins_and_sys_exit_is_isolated(hostile_plugins, tmp_path):
    regs = plugins.registries()
    assert regs.backbones.owner("rrdbnet") == "builtin_backbones"
    assert regs.recipes.owner("quickstart") != "aaa_dup"
    reasons: dict[str, str] = {}
    for prob in regs.problems:
        reasons[prob.plugin] = reasons.get(prob.plugin, "") + " | " + prob.reason
    assert "'rrdbnet'" in reasons["aaa_dup"] and "'quickstart'" in reasons["aaa_dup"]
    assert "SystemExit" in reasons["bad_exit"]
    # the built-ins keep working: an RRDBNet checkpoint loads as RRDBNet, quickstart is ours
    from gradguide.models.rrdb import RRDBNet
    from gradguide.train.recipe import resolve_recipe

    torch.manual_seed(0)
    p = gradguide.save(RRDBNet(nf=4, nb=1, gc=4, scale=2), tmp_path / "rrdb.safetensors")
    assert isinstance(gradguide.load(p), RRDBNet)
    assert resolve_recipe("quickstart").name != "evil"


def test_every_command_survives_a_plugin_that_exits(hostile_plugins, capsys):
    from gradguide.cli import main

    assert main(["backbones"]) == 0
    out = capsys.readouterr()
    assert "rrdbnet" in out.out and "bad_exit" in out.out + out.err
    assert main(["recipes"]) == 0


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _Custom:
    pass


def test_pickle_refusal_names_the_global_in_one_clean_line(tmp_path, capsys):
    from gradguide.cli import main

    torch.save({"w": torch.zeros(1), "obj": _Payload()}, tmp_path / "evil.pth")
    torch.save({"w": torch.zeros(1), "obj": _Custom()}, tmp_path / "custom.pth")
    for name, glob in (("evil.pth", "posix.system"), ("custom.pth", "test_safety_core._Custom")):
        with pytest.raises(CheckpointError) as ei:
            gradguide.load(tmp_path / name)
        msg = str(ei.value)
        assert msg.startswith(f"{tmp_path / name}: refused") and glob in msg
        assert "\n" not in msg and "\x1b" not in msg and "weights_only" not in msg and len(msg) - len(str(tmp_path)) < 160
        assert main(["inspect", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and glob in err and "weights_only" not in err
    assert "pwned" not in capsys.readouterr().out


def test_a_pickle_named_safetensors_is_named_as_such(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match=r"x\.safetensors: named \.safetensors but is a PyTorch pickle") as ei:
        gradguide.load(tmp_path / "x.safetensors")
    assert "header too large" not in str(ei.value)
