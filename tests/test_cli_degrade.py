"""``gradguide degrade``: fixed-seed pairs in the paired layout, contact sheet."""
import numpy as np
import pytest
import torch
from PIL import Image

from gradguide.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def hr_dir(tmp_path):
    d = tmp_path / "hr"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (40, 52), "b": (37, 45)}.items():
        yy, xx = np.mgrid[0:h, 0:w]
        img = (128 + 60 * np.sin(xx / 3.0)[..., None] + rng.normal(0, 5, (h, w, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{name}.png")
    return d


def _arr(p):
    return np.asarray(Image.open(p))


def test_writes_pairs_with_a_fixed_seed_and_a_preview(hr_dir, tmp_path, capsys):
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    assert main(["degrade", str(hr_dir), str(out1), "--recipe", "quickstart", "--preview", "--preview-crop", "32"]) == 0
    assert main(["degrade", str(hr_dir), str(out2), "--recipe", "quickstart"]) == 0
    for name, hw in {"a": (40, 52), "b": (36, 44)}.items():  # b is mod-cropped to a multiple of 4
        hr, lr = _arr(out1 / "HR" / f"{name}.png"), _arr(out1 / "LR" / "X4" / f"{name}.png")
        assert hr.shape[:2] == hw and lr.shape[:2] == (hw[0] // 4, hw[1] // 4)
        assert np.array_equal(lr, _arr(out2 / "LR" / "X4" / f"{name}.png"))  # same seed, same LR
    sheet = _arr(out1 / "preview.png")
    assert sheet.shape == (2 * 32 + 2, 5 * 32 + 4 * 2, 3)  # 2 images x (HR + 4 draws)
    out3 = tmp_path / "o3"
    assert main(["degrade", str(hr_dir), str(out3), "--recipe", "quickstart", "--seed", "1"]) == 0
    assert not np.array_equal(_arr(out1 / "LR" / "X4" / "a.png"), _arr(out3 / "LR" / "X4" / "a.png"))


def test_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["degrade", str(tmp_path / "nope"), str(tmp_path / "o"), "--recipe", "quickstart"]) == 2
    err = capsys.readouterr().err.strip()
    assert "IN_DIR is not a folder" in err and len(err.splitlines()) == 1
