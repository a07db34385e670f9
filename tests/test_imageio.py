"""Safe image reading/writing: grey, RGBA, 16-bit, corrupt/truncated/non-image, bombs, globs."""
import numpy as np
import pytest
import torch
from PIL import Image

from gradguide.errors import ImageReadError
from gradguide.imageio import ImageData, list_images, read_image, to_uint8, write_image


def _rgb(h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_read_rgb_png(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "a.png")
    d = read_image(tmp_path / "a.png")
    assert isinstance(d, ImageData)
    assert d.rgb.shape == (3, 6, 5) and d.rgb.dtype == torch.float32
    assert d.alpha is None and not d.is_grey and d.bit_depth == 8 and d.size == (6, 5)
    assert torch.equal(to_uint8(d.rgb).permute(1, 2, 0), torch.from_numpy(a))


def test_read_grey_replicated(tmp_path):
    g = _rgb()[..., 0]
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    d = read_image(tmp_path / "g.png")
    assert d.is_grey and d.rgb.shape == (3, 6, 5)
    assert torch.equal(d.rgb[0], d.rgb[2])
    assert torch.equal(to_uint8(d.rgb[1]), torch.from_numpy(g))


def test_read_rgba_and_la(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, size=(4, 3, 4), dtype=np.uint8)
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    d = read_image(tmp_path / "a.png")
    assert d.alpha is not None and d.alpha.shape == (1, 4, 3)
    assert torch.equal(to_uint8(d.alpha[0]), torch.from_numpy(a[..., 3]))
    la = Image.fromarray(a[..., :2].copy(), mode="LA")
    la.save(tmp_path / "la.png")
    d2 = read_image(tmp_path / "la.png")
    assert d2.is_grey and d2.alpha is not None


def test_16bit_grey_and_rgb_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    g16 = rng.integers(0, 65536, size=(5, 4), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    d = read_image(tmp_path / "g16.png")
    assert d.bit_depth == 16 and d.is_grey
    assert np.array_equal(np.round(d.rgb[0].double().numpy() * 65535).astype(np.uint16), g16)

    rgb = torch.rand(3, 5, 4)
    alpha = torch.rand(1, 5, 4)
    write_image(tmp_path / "c16.png", rgb, alpha=alpha, bit_depth=16)
    e = read_image(tmp_path / "c16.png")
    assert e.bit_depth == 16 and not e.is_grey and e.alpha is not None
    # 16-bit keeps far more than 8 bits of precision (Pillow alone would truncate)
    assert (e.rgb - rgb).abs().max() < 1e-4
    assert (e.alpha - alpha).abs().max() < 1e-4


def test_write_8bit_grey_and_atomic(tmp_path):
    rgb = torch.rand(1, 3, 7, 6)
    out = write_image(tmp_path / "sub" / "o.png", rgb)
    assert out.exists() and not list((tmp_path / "sub").glob(".*tmp"))
    d = read_image(out)
    assert (d.rgb - rgb[0]).abs().max() <= 0.5 / 255 + 1e-6
    write_image(tmp_path / "g.png", rgb[0], grey=True)
    assert Image.open(tmp_path / "g.png").mode == "L"
    with pytest.raises(ValueError, match="bit_depth"):
        write_image(tmp_path / "x.png", rgb[0], bit_depth=12)


def test_corrupt_truncated_nonimage_missing(tmp_path):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("hello, not an image")
    bad = bytearray(data)
    bad[60:80] = b"\x00" * 20
    (tmp_path / "crc.png").write_bytes(bytes(bad))
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "ok.jpg", quality=90)
    (tmp_path / "trunc.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:200])
    for name in ("trunc.png", "text.png", "crc.png", "trunc.jpg", "missing.png"):
        with pytest.raises(ImageReadError) as ei:
            read_image(tmp_path / name)
        msg = str(ei.value)
        assert name in msg and "\n" not in msg
    (tmp_path / "t16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + data[8:33].replace(b"\x08\x02", b"\x10\x02", 1)[:25])
    with pytest.raises(ImageReadError, match="t16.png"):
        read_image(tmp_path / "t16.png")


def test_decompression_bomb_refused(tmp_path):
    Image.fromarray(_rgb(40, 50)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="big.png.*exceeds the limit"):
        read_image(tmp_path / "big.png", max_pixels=1000)
    Image.fromarray(_rgb(40, 50)).save(tmp_path / "big.bmp")
    with pytest.raises(ImageReadError, match="big.bmp.*2000"):
        read_image(tmp_path / "big.bmp", max_pixels=1999)
    assert read_image(tmp_path / "big.png", max_pixels=2000).size == (40, 50)


def test_list_images(tmp_path):
    for n in ("b.png", "a.jpg", "c.txt"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "e.PNG").write_bytes(b"x")
    got = list_images([str(tmp_path)])
    assert [p.name for p in got] == ["a.jpg", "b.png"]
    got = list_images([str(tmp_path / "*.png"), str(tmp_path / "d"), str(tmp_path / "c.txt"), str(tmp_path / "b.png")])
    assert [p.name for p in got] == ["b.png", "c.txt", "e.PNG"]
    with pytest.raises(ImageReadError, match="nope"):
        list_images([str(tmp_path / "nope")])
    with pytest.raises(ImageReadError, match="glob"):
        list_images([str(tmp_path / "*.webp")])
