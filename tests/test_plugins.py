"""Plugin system: lazy manager, built-ins registered like third parties, broken plugins
reported by name and skipped, duplicates refused; the backbones/plugins commands."""
import subprocess
import sys
import types

import pytest

from gradguide import plugins
from gradguide.hookspecs import hookimpl
from gradguide.registry import BackboneEntry, Registry, DuplicateNameError


def test_import_does_not_build_the_plugin_manager():
    code = "import gradguide, gradguide.wrap, gradguide.plugins as p; assert p._state.pm is None; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_builtins_come_through_entry_points():
    regs = plugins.registries()
    for name in ("rrdbnet", "srresnet", "edsr", "rcan", "swinir", "spandrel-esrgan", "spandrel-swinir"):
        assert regs.backbones.owner(name) == "builtin_backbones"
    assert "basicsr-edsr" in regs.layouts and "swinir" in regs.layouts
    assert not regs.problems, regs.problems


def _plugin(**hooks):
    mod = types.SimpleNamespace()
    for k, fn in hooks.items():
        setattr(mod, k, hookimpl(fn))
    return mod


def test_broken_plugins_are_reported_and_skipped(fresh_plugin_manager):
    pm = fresh_plugin_manager
    pm.register(_plugin(gradguide_backbones=lambda: 42), name="returns_garbage")
    pm.register(_plugin(gradguide_backbones=lambda: 1 / 0), name="raises")
    dup = BackboneEntry(name="rrdbnet", factory=object, classes=(), spec=lambda m: None)
    pm.register(_plugin(gradguide_backbones=lambda: [dup]), name="duplicate")
    with plugins.use_plugin_manager(pm, [plugins.PluginProblem("missing_mod", "failed to load 'x': ImportError")]):
        regs = plugins.registries()
        reasons = {p.plugin: p.reason for p in regs.problems}
        assert "must return a list of BackboneEntry" in reasons["returns_garbage"]
        assert "ZeroDivisionError" in reasons["raises"]
        assert "already registered by plugin 'builtin_backbones'" in reasons["duplicate"]
        assert "missing_mod" in reasons
        assert regs.backbones.owner("rrdbnet") == "builtin_backbones"  # the rest keep working
        assert "edsr" in regs.backbones


def test_failing_entry_point_is_isolated(monkeypatch):
    import importlib.metadata as md

    real = md.entry_points

    def fake(group=None, **kw):
        eps = list(real(group=group, **kw))
        return eps + [md.EntryPoint("zz_broken", "gradguide_no_such_module.plugin", group)]

    monkeypatch.setattr(md, "entry_points", fake)
    pm, problems = plugins.new_plugin_manager()
    assert [p.plugin for p in problems] == ["zz_broken"] and "ModuleNotFoundError" in problems[0].reason
    assert pm.get_plugin("builtin_backbones") is not None


def test_registry_refuses_duplicates():
    r = Registry("thing")
    r.add("a", 1, owner="p")
    with pytest.raises(DuplicateNameError, match="already registered by plugin 'p'"):
        r.add("a", 2, owner="q")
    with pytest.raises(KeyError, match="registered: a"):
        r.get("b")


def test_cli_backbones_and_plugins(capsys, monkeypatch):
    from gradguide.cli import main

    monkeypatch.setenv("COLUMNS", "300")  # rich wraps table cells to the terminal width

    assert main(["backbones", "--spec", "edsr"]) == 0
    out = capsys.readouterr().out
    for name in ("rrdbnet", "srresnet", "edsr", "rcan", "swinir", "spandrel-esrgan"):
        assert name in out
    assert "body.3" in out and "conv_after_body" in out
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "builtin_backbones" in out and "gradguide_backbones.plugin" in out
    assert main(["backbones", "--spec", "nope"]) == 2


def test_hook_contracts_are_documented_from_the_code():
    """docs/plugins.md lists each hook with the return type its spec declares."""
    from pathlib import Path

    from gradguide.plugin import hook_contracts

    doc = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    contracts = hook_contracts()
    assert set(contracts) == {"gradguide_backbones", "gradguide_discriminators", "gradguide_losses", "gradguide_recipes"}
    for hook, (returns, _) in contracts.items():
        assert f"| `{hook}()` | `{returns}` |" in doc, (hook, returns)
    import gradguide.plugin

    assert all(hook in gradguide.plugin.__doc__ for hook in contracts)


def test_example_plugin_imports_only_the_public_plugin_api():
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1] / "plugins" / "gradguide-carn"
    used = set()
    for p in root.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used.update(a.name for a in node.names)
    assert {m for m in used if m.split(".")[0] == "gradguide"} == {"gradguide.plugin"}, used


def test_a_retired_hook_is_reported_not_silently_ignored(fresh_plugin_manager):
    pm = fresh_plugin_manager
    old = types.SimpleNamespace(gradguide_checkpoint_layouts=lambda: [])
    pm.register(old, name="old_style")
    with plugins.use_plugin_manager(pm):
        reasons = {p.plugin: p.reason for p in plugins.registries().problems}
    assert "not a gradguide hook any more" in reasons["old_style"] and "Architecture(" in reasons["old_style"]
