"""``gradguide eval --no-reference``: real LR photos, no HR, NIQE on the outputs."""
import numpy as np
import pytest
from PIL import Image

from gradguide.cli import main
from gradguide.errors import GradguideError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def lr_dir(tmp_path):
    from skimage import data

    d = tmp_path / "real_lr"
    d.mkdir()
    Image.fromarray(data.astronaut()[::4, ::4][:56, :52]).save(d / "astro.png")  # -> 224x208 at x4: 2x2 NIQE blocks
    Image.fromarray(data.coffee()[::4, ::4][:56, :56]).save(d / "coffee.png")
    return d


def test_niqe_of_the_upscaled_lr_with_no_hr(lr_dir):
    import torch

    from gradguide.data.imresize import imresize
    from gradguide.eval import evaluate, niqe

    rep = evaluate(["bicubic"], lr_dir, scale=4, no_reference=True)
    res = rep.results["real_lr"]["Bicubic"]
    assert [i.name for i in res.images] == ["astro.png", "coffee.png"]
    lr = np.asarray(Image.open(lr_dir / "astro.png"))
    sr = torch.from_numpy(imresize(lr, 4.0)).permute(2, 0, 1)[None]
    ref = niqe(sr, crop=4).item()
    assert np.isfinite(ref) and res.images[0].metrics["NIQE"] == pytest.approx(ref, rel=1e-9)
    assert res.images[0].metrics["PSNR"] is None and res.mean["NIQE"] is not None
    assert "reference" in rep.protocol.to_dict() and rep.protocol.reference.startswith("none")
    assert any("no reference" in n for n in rep.notes)


def test_full_reference_metric_is_refused(lr_dir):
    from gradguide.eval import evaluate

    with pytest.raises(GradguideError, match="PSNR need HR"):
        evaluate(["bicubic"], lr_dir, scale=4, metrics=["PSNR"], no_reference=True)


def test_cli_no_reference_reads_the_lr_side_of_a_paired_folder(lr_dir, tmp_path, capsys):
    paired = tmp_path / "paired"
    (paired / "HR").mkdir(parents=True)
    (paired / "LR" / "X4").mkdir(parents=True)
    for f in lr_dir.iterdir():
        (paired / "LR" / "X4" / f.name).write_bytes(f.read_bytes())
        Image.new("RGB", (4, 4)).save(paired / "HR" / f.name)  # never read: too small for NIQE
    assert main(["eval", "bicubic", "--data", str(paired), "--scale", "4", "--no-reference", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "NIQE" in out and "paired" in out
