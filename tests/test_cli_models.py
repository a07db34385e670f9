import subprocess
import sys

import torch

import gradguide
from gradguide.checkpoints import spsr_to_official
from gradguide.cli import main


def test_convert_then_inspect(tmp_path, capsys):
    m = gradguide.create_spsr(nf=4, nb=2, gc=4, scale=4).eval()
    torch.save(spsr_to_official(m), tmp_path / "official.pth")
    assert main(["convert", str(tmp_path / "official.pth"), str(tmp_path / "g.safetensors")]) == 0
    assert "spsr-official" in capsys.readouterr().out
    loaded = gradguide.load(tmp_path / "g.safetensors")
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(loaded(x).sr, m(x).sr)
    assert main(["inspect", str(tmp_path / "g.safetensors"), "--size", "8", "8", "--keys"]) == 0
    out = capsys.readouterr().out
    assert "gradguide" in out and "spsr" in out and "GFLOPs at 8x8 LR" in out and "parameters" in out


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    assert main(["inspect", str(tmp_path / "junk.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert "junk.pth" in err and len(err.splitlines()) == 1


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "gradguide.cli", "--help"], capture_output=True, text=True, check=True)
    assert "convert" in out.stdout and "inspect" in out.stdout


def test_installed_import_names_are_not_generic(tmp_path):
    code = (
        "import importlib.util as u, json;"
        "print(json.dumps([u.find_spec('backbones') is None, u.find_spec('gradguide_backbones') is not None]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[true, true]"


def test_plain_gradguide_error_is_one_line(monkeypatch, capsys):
    from gradguide.commands import models
    from gradguide.errors import GradguideError

    def boom(args):
        raise GradguideError("thing.pth: broken in a specific way")

    monkeypatch.setattr(models, "_inspect", boom)
    assert main(["inspect", "thing.pth"]) == 2
    assert capsys.readouterr().err.strip() == "error: thing.pth: broken in a specific way"


def test_top_level_api_names_are_the_functions():
    import subprocess, sys

    code = (
        "import gradguide.spsr, gradguide.wrap, gradguide.checkpoints, gradguide;"
        "import inspect;"
        "print(all(inspect.isfunction(getattr(gradguide, n)) for n in ('wrap', 'unwrap', 'load', 'save', 'create_spsr', 'evaluate', 'upscale')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
