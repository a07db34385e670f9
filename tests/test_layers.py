"""The core's imports point one way: down the layers docs/architecture.md lists, with no
import cycle among gradguide modules (module-level and function-level imports alike, so
no lazy import can hide one), and the core never imports the built-in plugin package
``gradguide_backbones``."""
import ast
import re
from pathlib import Path

import gradguide

ROOT = Path(gradguide.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every gradguide module ``name`` imports, at any depth of its code."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import mod`` imports the module; ``from mod import name`` the module mod
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] == "gradguide_backbones":
                found.add(t)
                continue
            # the deepest gradguide module named (``from .x import y``: y if it is a module)
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {n: _imports(n, p, known) for n, p in mods.items()}


def _cycle(graph: dict[str, set[str]]):
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m not in graph:
                continue
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle_among_gradguide_modules():
    graph = _graph()
    # the package __init__ re-exports the public API: it may import anything, and a
    # submodule importing the package itself would be an edge back into everything
    graph.pop("gradguide", None)
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_core_never_imports_the_builtin_plugin_package():
    bad = {n: sorted(t for t in deps if t.startswith("gradguide_backbones")) for n, deps in _graph().items()}
    bad = {n: t for n, t in bad.items() if t}
    assert not bad, bad


def _doc_layers() -> dict[str, int]:
    """First component of a gradguide module name -> its layer, from docs/architecture.md."""
    text = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for m in re.finditer(r"^(\d+)\. (.*?)(?=^\d+\. |\Z)", section, flags=re.S | re.M):
        for token in re.findall(r"`([\w/]+(?:\.py|/))`", m.group(2)):
            layers.setdefault(token.split("/")[0].removesuffix(".py"), int(m.group(1)))
    return layers


def _layer(module: str, layers: dict[str, int]) -> int:
    return layers.get(module.split(".")[1], 6)


def test_imports_point_down_the_documented_layers():
    layers = _doc_layers()
    assert layers.get("errors") == 1 and layers.get("nn") == 2 and layers.get("checkpoints") == 4, layers
    up = [
        f"{m} (layer {_layer(m, layers)}) imports {d} (layer {_layer(d, layers)})"
        for m, deps in sorted(_graph().items()) if m != "gradguide"
        for d in sorted(deps) if d.startswith("gradguide.") and _layer(d, layers) > _layer(m, layers)
    ]
    assert not up, "\n".join(up)


def test_the_scan_sees_cycles_and_plugin_imports(tmp_path):
    """The checks above can fail: a planted cycle and a planted plugin import are found."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from gradguide_backbones.rrdb import RRDBNet\n    from . import b\n")
    assert _imports("gradguide.a", a, {"gradguide.a", "gradguide.b"}) == {"gradguide_backbones.rrdb", "gradguide.b"}
    assert _cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert _cycle({"x": {"y"}, "y": {"z"}, "z": set()}) is None
    layers = _doc_layers()
    assert _layer("gradguide.wrap", layers) < _layer("gradguide.checkpoints", layers) < _layer("gradguide.train.trainer", layers)



def test_builtin_backbones_import_only_the_public_plugin_api():
    """The built-in plugin package uses gradguide.plugin like a third party (its rrdb.py
    only re-exports the core's RRDBNet, as docs/architecture.md says)."""
    used = {}
    for p in (ROOT.parent / "backbones").glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "gradguide":
                used.setdefault(p.name, set()).add(node.module)
    assert used.pop("rrdb.py") == {"gradguide.models.rrdb"}
    assert all(mods == {"gradguide.plugin"} for mods in used.values()), used
