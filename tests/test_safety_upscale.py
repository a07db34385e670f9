"""Issue 9, inference side: each numbered failure reproduced, and now handled.

1 data loss (output folder = input folder, silent overwrite, mode 0600); 5 non-finite
output written as a black PNG; 6 eval aborted by an image smaller than the scale;
7 raw OS errors (disk full, read-only -o, -o is a file); 8 EXIF orientation, animated
GIF skipped silently, mode 0600; 10 messages (empty folder, missing input twice,
--scale contradicting the model, mistyped flags, wrapping, torch warnings, CUDA default).
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

import gradguide
from gradguide.cli import main
from gradguide.errors import BatchStopped, ImageReadError, InferenceError
from gradguide.fileio import atomic_write as _REAL_ATOMIC_WRITE
from gradguide.imageio import read_image

pytestmark = pytest.mark.usefixtures("one_thread")


class TinySR(torch.nn.Module):
    def __init__(self, scale=2, nan=False):
        super().__init__()
        self.scale = scale
        self.nan = nan
        self.c = torch.nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.up = torch.nn.PixelShuffle(scale)

    def forward(self, x):
        y = torch.sigmoid(self.up(self.c(x)))
        return y * float("nan") if self.nan else y


def _png(path, h=8, w=10, value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    return gradguide.save(gradguide.create_spsr(nf=4, nb=1, gc=4, scale=2), tmp_path / "m.safetensors")


# 1. data loss ----------------------------------------------------------------------
def test_output_folder_equal_to_input_folder_never_overwrites_an_input(tmp_path, capsys):
    d = tmp_path / "photos"
    _png(d / "a.png"), _png(d / "b.png", value=30)
    before = _digest(d)
    res = gradguide.upscale(TinySR(), [str(d)], d, progress=False)
    assert _digest(d) == before  # inputs unchanged
    assert all(not r.written for r in res) and all("would overwrite an input" in r.error for r in res)
    # with --overwrite too
    res = gradguide.upscale(TinySR(), [str(d)], d, overwrite=True, progress=False)
    assert _digest(d) == before and all(not r.ok for r in res)


def test_cli_same_folder_exit_code_and_message(tmp_path, model_file, capsys):
    d = tmp_path / "photos"
    _png(d / "a.png")
    before = _digest(d)
    rc = main(["upscale", str(model_file), str(d), "-o", str(d), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "0 written" in err and "would overwrite an input" in err and "a.png" in err
    assert _digest(d) == before


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _png(src / "a.png"), _png(src / "b.png")
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    res = gradguide.upscale(TinySR(), [str(src)], out, progress=False)
    by = {r.input.name: r for r in res}
    assert (out / "a.png").read_bytes() == b"precious"
    assert by["a.png"].exists == out / "a.png" and not by["a.png"].written and by["a.png"].ok
    assert by["b.png"].written
    res = gradguide.upscale(TinySR(), [str(src)], out, overwrite=True, progress=False)
    assert (out / "a.png").read_bytes() != b"precious" and all(r.written for r in res)


def test_cli_reports_kept_outputs(tmp_path, model_file, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _png(src / "a.png")
    assert main(["upscale", str(model_file), str(src), "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["upscale", str(model_file), str(src), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "exists:" in err and "--overwrite" in err and "0 written" in err and "1 kept" in err


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_umask_mode(tmp_path, umask, model_file):
    old = os.umask(umask)
    try:
        _png(tmp_path / "in" / "a.png")
        res = gradguide.upscale(TinySR(), [str(tmp_path / "in")], tmp_path / "out", progress=False)
        ck = gradguide.save(TinySR(), tmp_path / "ck.safetensors")
    finally:
        os.umask(old)
    for p in (res[0].output, ck):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask, p


# 5. non-finite output --------------------------------------------------------------
def test_non_finite_output_is_refused_and_named(tmp_path, capsys):
    _png(tmp_path / "in" / "a.png")
    res = gradguide.upscale(TinySR(nan=True), [str(tmp_path / "in")], tmp_path / "out", progress=False)
    assert not res[0].ok and "a.png" in res[0].error and "NaN" in res[0].error
    assert not (tmp_path / "out" / "a.png").exists()


def test_cli_non_finite_weights_exit_1_and_no_black_png(tmp_path, capsys):
    torch.manual_seed(0)
    net = gradguide.create_spsr(nf=4, nb=1, gc=4, scale=2)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    ck = gradguide.save(net, tmp_path / "nan.safetensors")
    _png(tmp_path / "in" / "a.png")
    rc = main(["upscale", str(ck), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and not (tmp_path / "out" / "a.png").exists()
    assert "nan.safetensors" in err or "a.png" in err
    assert all(ln.startswith(("error:", "warning:", "skipped:")) or "written" in ln for ln in err.splitlines()), err


# 6. eval on an image smaller than the scale ------------------------------------------
def test_eval_names_an_image_smaller_than_the_scale_and_goes_on(tmp_path):
    from gradguide.eval.evaluate import evaluate

    d = tmp_path / "set"
    _png(d / "big.png", 16, 16), _png(d / "tiny.png", 3, 3)
    rep = evaluate(["bicubic"], [str(d)], scale=4, metrics=["PSNR"])
    imgs = {s.name: s for s in rep.results["set"]["Bicubic"].images}
    assert imgs["big.png"].error is None and imgs["big.png"].metrics["PSNR"] is not None
    assert "tiny.png" in imgs["tiny.png"].error and "smaller than the scale" in imgs["tiny.png"].error


def test_upscale_handles_an_image_smaller_than_the_scale(tmp_path):
    _png(tmp_path / "in" / "t.png", 1, 1)
    res = gradguide.upscale(TinySR(4), [str(tmp_path / "in")], tmp_path / "out", progress=False)
    assert res[0].written and Image.open(res[0].output).size == (4, 4)


# 7. raw OS errors ------------------------------------------------------------------
def _fail_writes_after(monkeypatch, n_ok, err):
    import gradguide.fileio as F

    real = _REAL_ATOMIC_WRITE
    calls = [0]

    def failing(path, write, **kw):
        calls[0] += 1
        if calls[0] > n_ok:  # the OS refuses the bytes, as a full or read-only disk does

            def write(fh):
                raise OSError(err, os.strerror(err))

        return real(path, write, **kw)

    monkeypatch.setattr(F, "atomic_write", failing)


def test_disk_full_stops_the_batch_with_one_line_saying_what_was_written(tmp_path, monkeypatch, model_file, capsys):
    for n in "abcd":
        _png(tmp_path / "in" / f"{n}.png")
    _fail_writes_after(monkeypatch, 2, errno.ENOSPC)
    with pytest.raises(BatchStopped) as ei:
        gradguide.upscale(TinySR(), [str(tmp_path / "in")], tmp_path / "out", progress=False)
    msg = str(ei.value)
    assert "No space left on device" in msg and "2 written" in msg and "2 not written" in msg and "[Errno" not in msg
    assert [r.output.name for r in ei.value.results if r.written] == ["a.png", "b.png"]
    _fail_writes_after(monkeypatch, 2, errno.ENOSPC)
    rc = main(["upscale", str(model_file), str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err  # one line, and it says what was written
    assert err.startswith("error: -o ") and str(tmp_path / "out2") in err and "No space left" in err
    assert "2 written (a.png, b.png), 2 not written" in err
    assert not list((tmp_path / "out2").glob(".*.tmp"))


def test_read_only_output_folder_names_the_o_argument(tmp_path, monkeypatch, model_file, capsys):
    _png(tmp_path / "in" / "a.png")
    _fail_writes_after(monkeypatch, 0, errno.EACCES)
    rc = main(["upscale", str(model_file), str(tmp_path / "in"), "-o", str(tmp_path / "ro"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"-o {tmp_path / 'ro'}" in err and "Permission denied" in err and ".tmp" not in err


def test_o_pointing_at_a_file(tmp_path, model_file, capsys):
    _png(tmp_path / "in" / "a.png")
    (tmp_path / "f").write_text("x")
    rc = main(["upscale", str(model_file), str(tmp_path / "in"), "-o", str(tmp_path / "f"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"-o {tmp_path / 'f'}: is a file, not a folder" in err and "Errno" not in err
    assert (tmp_path / "f").read_text() == "x"


def test_one_unwritable_file_does_not_stop_the_batch(tmp_path, monkeypatch):
    for n in "ab":
        _png(tmp_path / "in" / f"{n}.png")
    _fail_writes_after(monkeypatch, 0, errno.ENAMETOOLONG)
    res = gradguide.upscale(TinySR(), [str(tmp_path / "in")], tmp_path / "out", progress=False)
    assert len(res) == 2 and all("cannot write" in r.error for r in res)


# 8. images ------------------------------------------------------------------------
def test_exif_orientation_is_honoured(tmp_path):
    arr = np.zeros((4, 6, 3), np.uint8)
    arr[0, 0] = 255  # a marker in the stored top-left corner
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise (portrait)
    im.save(tmp_path / "p.jpg", exif=exif.tobytes(), quality=100)
    img = read_image(tmp_path / "p.jpg")
    assert img.size == (6, 4)  # portrait
    res = gradguide.upscale(TinySR(), [str(tmp_path / "p.jpg")], tmp_path / "out", progress=False)
    assert Image.open(res[0].output).size == (8, 12)  # (W, H): portrait


def test_animated_gif_and_other_files_in_a_folder_are_named(tmp_path, capsys):
    d = tmp_path / "in"
    _png(d / "a.png")
    frames = [Image.fromarray(np.full((6, 6, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    (d / "notes.txt").write_text("hi")
    res = gradguide.upscale(TinySR(), [str(d)], tmp_path / "out", progress=False)
    by = {r.input.name: r for r in res}
    assert by["a.png"].written
    assert "anim.gif" in by["anim.gif"].error and "unsupported file type" in by["anim.gif"].error
    assert "notes.txt" in by["notes.txt"].error
    err = capsys.readouterr().err
    assert "skipped:" in err and "anim.gif" in err
    # named explicitly, an animated GIF is refused with the reason
    with pytest.raises(ImageReadError, match=r"anim\.gif: animated GIF \(2 frames\)"):
        read_image(d / "anim.gif")


# 10. messages ----------------------------------------------------------------------
def test_empty_folder_is_named(tmp_path, model_file, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["upscale", str(model_file), str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tmp_path / 'empty'}: no image files in the folder" in err
    assert "no input images given" not in err


def test_a_missing_input_is_reported_once(tmp_path, model_file, capsys):
    rc = main(["upscale", str(model_file), str(tmp_path / "gone.png"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("gone.png") == 1


def test_scale_contradicting_the_model_names_its_scale(tmp_path, model_file, capsys):
    _png(tmp_path / "in" / "a.png")
    with pytest.raises(InferenceError, match=r"--scale 3: .*m\.safetensors is an x2 model"):
        gradguide.upscale(model_file, [str(tmp_path / "in")], tmp_path / "out", scale=3, progress=False)


def test_mistyped_flag_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["upscale", "m", "x", "-o", "y", "--save-grads"])
    err = capsys.readouterr().err
    assert ei.value.code == 2 and "--save-grads (did you mean --save-grad?)" in err
    with pytest.raises(SystemExit):
        main(["upscal"])
    assert "did you mean 'upscale'" in capsys.readouterr().err


def test_piped_output_is_not_wrapped_and_has_no_ansi(tmp_path, model_file, capsys):
    deep = tmp_path / ("a_very_long_folder_name_" * 5) / "in"
    _png(deep / "ok.png")
    (deep / "broken_file_with_a_long_name.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rc = main(["upscale", str(model_file), str(deep), "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "\x1b[" not in err
    line = next(ln for ln in err.splitlines() if "broken_file_with_a_long_name.png" in ln)
    assert line.startswith("skipped: ") and str(deep) in line and len(line) > 120


def test_no_torch_warnings_leak(tmp_path, model_file, capsys, recwarn):
    d = tmp_path / "in"
    _png(d / "a.png")
    Image.fromarray(np.full((6, 6), 0.5, np.float32), mode="F").save(d / "f.tif")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = gradguide.upscale(TinySR(), [str(d)], tmp_path / "out", progress=False)
        assert all(r.written for r in res)
        from gradguide.eval.evaluate import evaluate

        evaluate(["bicubic"], [str(d)], scale=2, metrics=["PSNR"])


def test_device_defaults_to_cuda_when_present(monkeypatch):
    from gradguide.cli import build_parser
    from gradguide.commands import resolve_device_arg

    for argv in (["upscale", "m", "x", "-o", "y"], ["eval", "m", "--data", "d"]):
        assert build_parser().parse_args(argv).device == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device_arg("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device_arg("auto") == "cpu"
    assert resolve_device_arg("cpu") == "cpu"


def test_symlink_loop_is_named_as_such(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(ImageReadError, match="symbolic link loop"):
        read_image(a)
    with pytest.raises(gradguide.errors.CheckpointError, match="symbolic link loop"):
        gradguide.load(a)


def test_scale_of_a_model_without_a_scale_attribute_is_named(tmp_path):
    class Plain(torch.nn.Module):  # no .scale: the factor shows only in its output
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=4)

    _png(tmp_path / "in" / "a.png")
    with pytest.raises(InferenceError, match=r"--scale 3: the model is x4"):
        gradguide.upscale(Plain(), [str(tmp_path / "in")], tmp_path / "out", scale=3, progress=False)


def test_write_errors_name_the_destination_not_the_temp_file(tmp_path, monkeypatch):
    import gradguide.fileio as F

    def full(fd, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(F.os, "fsync", full)
    with pytest.raises(OSError) as ei:
        F.atomic_write(tmp_path / "state.pt", lambda fh: fh.write(b"x"))
    assert ei.value.filename == str(tmp_path / "state.pt") and ei.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone
    from gradguide.cli import error_line

    assert error_line(ei.value) == f"{tmp_path / 'state.pt'}: No space left on device"


def test_broken_links_in_a_folder_are_named(tmp_path):
    d = tmp_path / "in"
    _png(d / "ok.png")
    (d / "loop.png").symlink_to(d / "loop.png")
    (d / "gone.png").symlink_to(tmp_path / "nowhere.png")
    res = gradguide.upscale(TinySR(), [str(d)], tmp_path / "out", progress=False)
    by = {r.input.name: r for r in res}
    assert by["ok.png"].written
    assert "symbolic link loop" in by["loop.png"].error
    assert "broken symbolic link" in by["gone.png"].error
