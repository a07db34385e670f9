"""Adding a fusion, a loss term and a backbone with its own checkpoint layout each touches
exactly the files docs/architecture.md ("Where a change goes") says, and works.

Each change is made in a copy of the source tree (gradguide, gradguide_backbones and the
recipes), the files that changed are compared with the docs' row, and a script run
against the copy shows the new thing working end to end.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradguide

SRC = Path(gradguide.__file__).parent
REPO = SRC.parent
DOC = REPO / "docs" / "architecture.md"


def _doc_rows() -> dict[str, list[str]]:
    """change -> files, from the docs' "Where a change goes" table."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Where a change goes", 1)[1]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("change", "---"):
            rows[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return rows


def _tree(tmp: Path) -> Path:
    """A copy of the sources, importable from ``tmp/src`` ahead of the installed tree."""
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.safetensors", "*.pth")
    shutil.copytree(SRC, src / "gradguide", ignore=skip)
    shutil.copytree(REPO / "backbones", src / "gradguide_backbones", ignore=skip)
    shutil.rmtree(src / "gradguide" / "recipes", ignore_errors=True)
    shutil.copytree(REPO / "recipes", src / "gradguide" / "recipes", ignore=skip)
    return src


def _snapshot(src: Path) -> dict[str, str]:
    return {
        str(p.relative_to(src)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


def _repo_path(rel: str) -> str:
    """A path in the copy -> the path in the repository the docs name."""
    if rel.startswith("gradguide_backbones/"):
        return "backbones/" + rel[len("gradguide_backbones/"):]
    if rel.startswith("gradguide/recipes/"):
        return "recipes/" + rel[len("gradguide/recipes/"):]
    return rel


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {_repo_path(k) for k in set(before) | set(after) if before.get(k) != after.get(k)}


def _run(src: Path, script: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env, timeout=300, cwd=src)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _check_files(change: str, name: str, changed: set[str]) -> None:
    expected = {f.replace("<name>", name) for f in _doc_rows()[change]}
    assert changed == expected, f"{change}: changed {sorted(changed)}, docs/architecture.md says {sorted(expected)}"


_PRELUDE = """
    import gradguide, torch, warnings
    from pathlib import Path
    assert Path(gradguide.__file__).parent == Path({src!r}) / "gradguide", gradguide.__file__
    torch.manual_seed(0)
"""


def test_docs_name_the_three_changes():
    rows = _doc_rows()
    for change in ("a fusion", "a loss term", "a backbone with its checkpoint layout"):
        assert rows.get(change), f"docs/architecture.md has no row for {change!r}: {sorted(rows)}"


def test_a_toy_fusion_is_one_record_and_its_classes(tmp_path):
    src = _tree(tmp_path)
    before = _snapshot(src)
    with open(src / "gradguide" / "nn" / "fusion.py", "a", encoding="utf-8") as fh:
        fh.write(textwrap.dedent('''

            class ToyFusion(LRFusion):
                """LR fusion with a residual block (the toy)."""


            FUSIONS["toy"] = FusionKind("toy", "lr", LRGradientBranch, ToyFusion, "res", 8, "a toy fusion")
        '''))
    _check_files("a fusion", "toy", _changed(before, _snapshot(src)))
    out = _run(src, _PRELUDE.format(src=str(src)) + """
    from gradguide.models.rrdb import RRDBNet
    from gradguide.nn.fusion import ToyFusion
    from gradguide.train.build import build_generator
    from gradguide.train.recipe import recipe_from_dict

    g = gradguide.wrap(RRDBNet(nf=8, nb=2, gc=4, scale=2), fusion="toy")
    assert isinstance(g.fusion, ToyFusion) and "toy" in g.spec.fusions()
    assert g(torch.rand(1, 3, 6, 7)).sr.shape == (1, 3, 12, 14)
    p = gradguide.save(g, Path({tmp!r}) / "toy.safetensors")
    assert isinstance(gradguide.load(p).fusion, ToyFusion)
    r = recipe_from_dict({{"model": {{"backbone": "rrdbnet", "guidance": "toy", "scale": 2,
                                      "backbone_config": {{"nf": 8, "nb": 2, "gc": 4}}}}}}, "toy.toml").validate()
    assert isinstance(build_generator(r).fusion, ToyFusion)
    print("ok")
    """.format(tmp=str(tmp_path)))
    assert "ok" in out


def test_a_toy_loss_term_is_one_file(tmp_path):
    src = _tree(tmp_path)
    before = _snapshot(src)
    (src / "gradguide" / "losses" / "toy_term.py").write_text(textwrap.dedent('''
        """A toy extra term: mean |SR - HR| of the brightest pixels."""
        from torch import nn

        from ..registry import LossEntry


        class ToyTerm(nn.Module):
            def forward(self, out, hr):
                return (out.sr.float() - hr.float()).abs().amax(dim=(1, 2, 3)).mean()


        LOSSES = [LossEntry("toy_term", ToyTerm, "a toy term", term=True)]
    '''), encoding="utf-8")
    _check_files("a loss term", "toy_term", _changed(before, _snapshot(src)))
    out = _run(src, _PRELUDE.format(src=str(src)) + """
    from gradguide.train.build import build_loss
    from gradguide.train.recipe import recipe_from_dict
    from gradguide.train.reporting import loss_text
    from gradguide.types import SROutput

    r = recipe_from_dict({"loss": {"perceptual": 0.0, "gan": 0.0, "gradient_gan": 0.0, "terms": {"toy_term": 0.5}}}, "t.toml").validate()
    loss = build_loss(r)
    hr = torch.rand(2, 3, 8, 8)
    res = loss(SROutput(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), None), hr)
    assert res.terms["toy_term"] > 0 and "toy_term=" in loss_text(res.terms)
    print("ok")
    """)
    assert "ok" in out


_TOY_BACKBONE = '''
    """ToyNet: a tiny pixel-shuffle network, its guidance spec and its official layout."""
    from __future__ import annotations

    from torch import nn

    from gradguide.plugin import Architecture, CheckpointLayout, Converted, GuidanceSpec, Tap, count_indexed, infer_scale, rename, shuffle_factor


    class ToyNet(nn.Module):
        def __init__(self, nf: int = 8, nb: int = 2, upscale: int = 2) -> None:
            super().__init__()
            self.nf, self.nb, self.upscale = nf, nb, upscale
            self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
            self.body = nn.Sequential(*[nn.Conv2d(nf, nf, 3, 1, 1) for _ in range(nb)])
            self.up = nn.Sequential(nn.Conv2d(nf, nf * upscale * upscale, 3, 1, 1), nn.PixelShuffle(upscale))
            self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

        @property
        def scale(self) -> int:
            return self.upscale

        def forward(self, x):
            f = self.conv_first(x)
            return self.conv_last(self.up(self.body(f) + f))


    def toy_spec(m: ToyNet) -> GuidanceSpec:
        return GuidanceSpec(taps=tuple(Tap(f"body.{i}", m.nf) for i in range(m.nb)), replace="conv_last", hr_channels=m.nf,
                            scale=m.upscale, lr_feature="body", lr_channels=m.nf)


    def _convert(sd, meta, scale):
        out, unmatched = rename(sd, [(r"head\\.(weight|bias)", r"conv_first.\\1"), (r"blocks\\.(\\d+)\\.(weight|bias)", r"body.\\1.\\2"),
                                     (r"tail\\.(weight|bias)", r"up.0.\\1"), (r"last\\.(weight|bias)", r"conv_last.\\1")])
        if unmatched:
            raise ValueError(f"unexpected keys {unmatched[:3]}")
        nf = int(out["conv_first.weight"].shape[0])
        up = infer_scale([shuffle_factor(out["up.0.weight"].shape[0], nf)], meta, scale)
        return Converted({"nf": nf, "nb": count_indexed(out, "body."), "upscale": up}, out, {})


    LAYOUTS = (CheckpointLayout("toy-official", _convert, keys=("head.weight", "blocks.0.weight", "last.weight"), priority=20),)


    def backbone_entries() -> list[Architecture]:
        return [Architecture(name="toy", factory=ToyNet, classes=(ToyNet,), spec=toy_spec, config_of=lambda m: dict(nf=m.nf, nb=m.nb, upscale=m.upscale),
                             scales=(2, 3, 4), layouts=LAYOUTS, description="a toy backbone")]
'''


def test_a_toy_backbone_with_its_layout_is_one_file_and_one_line(tmp_path):
    src = _tree(tmp_path)
    before = _snapshot(src)
    pkg = src / "gradguide_backbones"
    (pkg / "toy.py").write_text(textwrap.dedent(_TOY_BACKBONE), encoding="utf-8")
    plugin = (pkg / "plugin.py").read_text(encoding="utf-8")
    plugin = plugin.replace("from . import edsr,", "from . import toy\nfrom . import edsr,", 1)
    plugin = plugin.replace("*rrdb.backbone_entries(),", "*rrdb.backbone_entries(), *toy.backbone_entries(),", 1)
    assert "toy.backbone_entries()" in plugin
    (pkg / "plugin.py").write_text(plugin, encoding="utf-8")
    _check_files("a backbone with its checkpoint layout", "toy", _changed(before, _snapshot(src)))
    out = _run(src, _PRELUDE.format(src=str(src)) + """
    from gradguide.checkpoints import load_checkpoint
    from gradguide.plugins import registries
    from gradguide.train.build import build_generator
    from gradguide.train.recipe import recipe_from_dict
    from gradguide_backbones.toy import ToyNet

    assert not registries().problems, registries().problems
    net = ToyNet(nf=8, nb=2, upscale=3)
    official = {{{{"conv_first": "head", "up.0": "tail", "conv_last": "last"}}.get(k.rsplit(".", 1)[0], k.rsplit(".", 1)[0].replace("body", "blocks"))
                 + "." + k.rsplit(".", 1)[1]: v for k, v in net.state_dict().items()}}
    p = Path({tmp!r}) / "toy_official.pth"
    torch.save(official, p)
    ck = load_checkpoint(p)
    assert isinstance(ck.model, ToyNet) and ck.report.layout == "toy-official" and ck.report.config["upscale"] == 3
    x = torch.rand(1, 3, 5, 6)
    assert torch.equal(ck.model(x), net.eval()(x))
    g = gradguide.wrap(ToyNet(), fusion="paper")  # the spec comes from the registry
    assert g(x).sr.shape == (1, 3, 10, 12)
    r = recipe_from_dict({{"model": {{"backbone": "toy", "guidance": "lr", "scale": 4}}}}, "toy.toml").validate()
    G = build_generator(r)
    assert G.backbone.upscale == 4  # model.scale reached the factory's own scale argument
    print("ok")
    """.format(tmp=str(tmp_path)))
    assert "ok" in out


def test_the_file_check_can_fail(tmp_path):
    """A change that touches a file the docs do not list is caught."""
    with pytest.raises(AssertionError, match="docs/architecture.md says"):
        _check_files("a fusion", "toy", {"gradguide/nn/fusion.py", "gradguide/wrap.py"})
