import numpy as np
import pytest
import torch
from PIL import Image

from gradguide.data import transforms as T
from gradguide.data.datasets import (
    DEMO_EVAL,
    DEMO_TRAIN,
    HRFolderDataset,
    PairedFolderDataset,
    ValidationDataset,
    demo_images,
    scan_images,
    skimage_dataset,
)
from gradguide.data.imresize import imresize
from gradguide.errors import DataError
from gradguide.imageio import read_image, write_image


pytestmark = pytest.mark.usefixtures("one_thread")


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def hr_dir(tmp_path):
    d = tmp_path / "hr"
    for i, (h, w) in enumerate([(40, 48), (33, 37), (64, 40)]):
        _png(d / f"img{i}.png", _rgb(h, w, seed=i))
    return d


# ----------------------------------------------------------------------------- bad folders


def test_missing_and_empty_folders_give_one_line_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as info:
        HRFolderDataset(missing, 4, crop=16)
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no image files") as info:
        HRFolderDataset(empty, 4, crop=16)
    assert str(empty) in str(info.value)
    good = _png(tmp_path / "good" / "a.png", _rgb(16, 16)).parent
    with pytest.raises(DataError, match="LR folder not found"):
        PairedFolderDataset(missing, good, 4, crop=16)
    with pytest.raises(DataError, match="LR folder contains no image files"):
        PairedFolderDataset(empty, good, 4, crop=16)
    with pytest.raises(DataError, match="not a folder"):
        ValidationDataset(empty / "notes.txt", 4)


def test_small_and_corrupt_files_are_named_and_skipped(hr_dir):
    _png(hr_dir / "tiny.png", _rgb(8, 30))
    (hr_dir / "broken.png").write_bytes((hr_dir / "img0.png").read_bytes()[:60])
    garbage = hr_dir / "garbage.jpg"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.warns(RuntimeWarning) as rec:
        ds = HRFolderDataset(hr_dir, 4, crop=32)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "tiny.png" in msgs and "smaller than the 32x32 crop" in msgs
    assert "broken.png" in msgs and "garbage.jpg" in msgs
    assert ds.names == ["img0", "img1", "img2"]
    with pytest.raises(DataError, match="at least 128x128"), pytest.warns(RuntimeWarning):
        HRFolderDataset(hr_dir, 4, crop=128)
    with pytest.raises(ValueError, match="divisible"):
        HRFolderDataset(hr_dir, 3, crop=32)


def test_file_that_fails_later_is_skipped_deterministically(hr_dir):
    ds = HRFolderDataset(hr_dir, 2, crop=16)
    expected = ds[1]
    (hr_dir / "img0.png").write_bytes(b"now corrupt")
    with pytest.warns(RuntimeWarning, match="img0.png"):
        lr, hr = ds[0]
    torch.testing.assert_close(hr, expected[1])  # the next good item, as a pure function
    torch.testing.assert_close(lr, expected[0])


# ----------------------------------------------------------------------------- HR folder


def test_hr_items_are_exact_bicubic_crops(hr_dir):
    ds = HRFolderDataset(hr_dir, 4, crop=16, augment=False, seed=7)
    ds.set_epoch(3)
    for i in range(len(ds)):
        lr, hr = ds[i]
        assert lr.shape == (3, 4, 4) and hr.shape == (3, 16, 16)
        assert lr.dtype == hr.dtype == torch.float32
        full = T.mod_crop(read_image(hr_dir / f"img{i}.png").rgb, 4)
        g = T.item_generator(7, 3, i)
        top, left = T.random_crop_position(full.shape[-2] // 4, full.shape[-1] // 4, 4, g)
        torch.testing.assert_close(hr, full[:, top * 4 : top * 4 + 16, left * 4 : left * 4 + 16])
        want = T.quantize(imresize(full, 0.25))[:, top : top + 4, left : left + 4]
        torch.testing.assert_close(lr, want, atol=1e-6, rtol=0)
        assert torch.equal(lr, T.quantize(lr))  # 8-bit levels, as a saved LR file


def test_items_are_pure_functions_of_seed_epoch_index(hr_dir):
    a = HRFolderDataset(hr_dir, 2, crop=16, seed=1)
    b = HRFolderDataset(hr_dir, 2, crop=16, seed=1)
    torch.manual_seed(123)
    a.set_epoch(2)
    x = a[1]
    torch.manual_seed(999)
    torch.rand(10)
    b.set_epoch(2)
    y = b[1]
    assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    seen = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        seen.add(a[0][1].sum().item())
    assert len(seen) > 1  # the crop/augmentation changes with the epoch
    c = HRFolderDataset(hr_dir, 2, crop=16, seed=2)
    c.set_epoch(2)
    assert not torch.equal(c[1][1], x[1])


def test_augment_is_identical_for_lr_and_hr(hr_dir):
    plain = HRFolderDataset(hr_dir, 2, crop=16, augment=False, seed=3)
    aug = HRFolderDataset(hr_dir, 2, crop=16, augment=True, seed=3)
    seen_flags = set()
    for i in range(len(plain)):
        for epoch in range(4):
            plain.set_epoch(epoch)
            aug.set_epoch(epoch)
            g = T.item_generator(3, epoch, i)
            full = read_image(hr_dir / f"img{i}.png").rgb
            T.random_crop_position(full.shape[-2] // 2, full.shape[-1] // 2, 8, g)
            flags = T.draw_augment(g)
            seen_flags.add(flags)
            lr, hr = plain[i]
            lr_a, hr_a = aug[i]
            assert torch.equal(lr_a, T.apply_augment(lr, flags))
            assert torch.equal(hr_a, T.apply_augment(hr, flags))
    assert len(seen_flags) > 2


def test_grey_rgba_and_16bit_inputs(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    Image.fromarray(_rgb(32, 32)[:, :, 0]).save(d / "grey.png")
    Image.fromarray(np.dstack([_rgb(32, 32, 1), np.full((32, 32), 7, np.uint8)])).save(d / "rgba.png")
    ramp = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32).expand(3, -1, -1)
    write_image(d / "deep.png", ramp, bit_depth=16)
    ds = HRFolderDataset(d, 2, crop=16, augment=False)
    items = dict(zip(ds.names, (ds[i] for i in range(len(ds)))))
    lr, hr = items["grey"]
    assert hr.shape == (3, 16, 16) and torch.equal(hr[0], hr[1]) and torch.equal(lr[0], lr[2])
    assert items["rgba"][1].shape == (3, 16, 16)
    lr16, hr16 = items["deep"]
    assert not torch.equal(hr16, T.quantize(hr16, 8))  # 16-bit precision kept
    assert torch.allclose(lr16, T.quantize(lr16, 16))


def test_in_memory_images_and_dataloader():
    imgs = [("a", _rgb(24, 24)), ("b", torch.rand(3, 20, 28)), ("g", np.zeros((16, 16), np.uint16))]
    ds = HRFolderDataset(imgs, 2, crop=16)
    assert ds.names == ["a", "b", "g"]
    lr, hr = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert lr.shape == (3, 3, 8, 8) and hr.shape == (3, 3, 16, 16)
    with pytest.raises(DataError, match="duplicate"):
        HRFolderDataset([("a", _rgb(24, 24)), ("a", _rgb(24, 24))], 2, crop=16)
    with pytest.raises(DataError, match="in-memory"):
        HRFolderDataset([], 2, crop=16)
    with pytest.raises(DataError, match="bad"):
        HRFolderDataset([("bad", np.zeros((4, 4, 5), np.uint8))], 2, crop=2)


# ----------------------------------------------------------------------------- paired


def _paired(tmp_path, scale=2):
    hr_d, lr_d = tmp_path / "HR", tmp_path / "LR"
    for i, (h, w) in enumerate([(32, 36), (41, 40)]):
        arr = _rgb(h, w, seed=10 + i)
        _png(hr_d / f"{i:04d}.png", arr)
        hh, ww = h - h % scale, w - w % scale
        name = f"{i:04d}x{scale}.png" if i else f"{i:04d}.png"  # both naming styles
        _png(lr_d / name, np.ascontiguousarray(arr[:hh:scale, :ww:scale]))
    return lr_d, hr_d


def test_paired_folders_align_crops(tmp_path):
    lr_d, hr_d = _paired(tmp_path)
    _png(hr_d / "lonely.png", _rgb(32, 32))
    with pytest.warns(RuntimeWarning, match="lonely.png"):
        plain = PairedFolderDataset(lr_d, hr_d, 2, crop=16, seed=5, augment=False)
    assert plain.names == ["0000", "0001"]
    with pytest.warns(RuntimeWarning):
        aug = PairedFolderDataset(lr_d, hr_d, 2, crop=16, seed=5)
    for epoch in range(3):
        plain.set_epoch(epoch)
        aug.set_epoch(epoch)
        for i in range(len(plain)):
            lr, hr = plain[i]
            assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16)
            assert torch.equal(lr, hr[:, ::2, ::2])  # LR files are every other HR pixel
            g = T.item_generator(5, epoch, i)
            h, w = plain.pairs[i][0].size
            T.random_crop_position(h, w, 8, g)
            flags = T.draw_augment(g)
            lr_a, hr_a = aug[i]
            assert torch.equal(lr_a, T.apply_augment(lr, flags)) and torch.equal(hr_a, T.apply_augment(hr, flags))


def test_paired_size_mismatch_names_both_files(tmp_path):
    lr_d, hr_d = _paired(tmp_path)
    _png(lr_d / "0000.png", _rgb(10, 10))
    with pytest.raises(DataError) as info:
        PairedFolderDataset(lr_d, hr_d, 2, crop=16)
    msg = str(info.value)
    assert str(lr_d / "0000.png") in msg and str(hr_d / "0000.png") in msg and "\n" not in msg


# ----------------------------------------------------------------------------- validation


def test_validation_dataset(hr_dir, tmp_path):
    ds = ValidationDataset(hr_dir, 4)
    assert ds.names == ["img0", "img1", "img2"]
    lr, hr = ds[1]  # 33x37 -> 32x36
    assert hr.shape == (3, 32, 36) and lr.shape == (3, 8, 9)
    full = read_image(hr_dir / "img1.png").rgb
    torch.testing.assert_close(hr, full[:, :32, :36])
    torch.testing.assert_close(lr, T.quantize(imresize(hr, 0.25)))
    assert ds[1][0] is lr  # cached
    lr_d, hr_d = _paired(tmp_path)
    pv = ValidationDataset(hr_d, 2, lr_root=lr_d)
    lr, hr = pv[1]
    assert hr.shape == (3, 40, 40) and torch.equal(lr, hr[:, ::2, ::2])


# ----------------------------------------------------------------------------- demo + transforms


def test_demo_images_offline_and_disjoint():
    train, evals = demo_images("train"), demo_images("eval")
    assert [n for n, _ in train] == list(DEMO_TRAIN) and [n for n, _ in evals] == list(DEMO_EVAL)
    assert not set(DEMO_TRAIN) & set(DEMO_EVAL)
    assert all(isinstance(a, np.ndarray) and min(a.shape[:2]) >= 128 for _, a in train + evals)
    ds = skimage_dataset("train", 4, crop=32, seed=0)
    assert len(ds) == len(DEMO_TRAIN) and ds[0][0].shape == (3, 8, 8)
    assert isinstance(skimage_dataset("val", 4), ValidationDataset)
    with pytest.raises(ValueError, match="split"):
        demo_images("test")


def test_transform_helpers():
    g1, g2 = T.item_generator(1, 2, 3), T.item_generator(1, 2, 3)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    assert not torch.equal(torch.rand(4, generator=T.item_generator(1, 2, 4)), torch.rand(4, generator=T.item_generator(1, 2, 3)))
    assert T.mod_crop(torch.zeros(2, 3, 10, 11), 4).shape == (2, 3, 8, 8)
    x = torch.arange(6.0).reshape(1, 2, 3)
    assert torch.equal(T.apply_augment(x, T.AugmentFlags(True, True, True)), x.flip(-1).flip(-2).transpose(-2, -1))
    assert torch.equal(T.quantize(torch.tensor([-1.0, 0.5, 2.0])), torch.tensor([0.0, 128 / 255, 1.0]))
    hr = torch.rand(3, 50, 46)
    full = imresize(T.mod_crop(hr, 3), 1 / 3)
    for top, left in [(0, 0), (5, 4), (full.shape[-2] - 4, full.shape[-1] - 4)]:
        lr, hp = T.bicubic_lr_crop(hr, 3, top, left, 4)
        torch.testing.assert_close(lr, full[:, top : top + 4, left : left + 4], atol=1e-6, rtol=0)
        assert hp.shape == (3, 12, 12)
    with pytest.raises(ValueError, match="does not fit"):
        T.random_crop_position(4, 4, 5, g1)
    assert len(scan_images([("x", torch.rand(3, 4, 4))])) == 1


# ----------------------------------------------------------------------------- border crops


def test_border_crops_lie_against_the_edges_at_the_asked_rate():
    g = torch.Generator().manual_seed(0)
    n = 4000
    pos = [T.random_crop_position(100, 200, 24, g, border=0.5) for _ in range(n)]
    tops, lefts = np.array([p[0] for p in pos]), np.array([p[1] for p in pos])
    # per axis: half the crops against an edge (either one, evenly), plus uniform ones that land there
    for v, hi in ((tops, 76), (lefts, 176)):
        at_edge = np.mean((v == 0) | (v == hi))
        assert 0.47 < at_edge < 0.56 and 0.2 < np.mean(v == 0) < 0.3 and 0.2 < np.mean(v == hi) < 0.3
        assert 0 <= v.min() and v.max() <= hi
    none = [T.random_crop_position(100, 200, 24, torch.Generator().manual_seed(i)) for i in range(200)]
    assert np.mean([p[0] in (0, 76) for p in none]) < 0.05  # uniform without it
    # border=0 draws exactly the old stream: seeds of existing runs keep their crops
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert T.random_crop_position(50, 60, 8, g1, border=0.0) == (T._randint(43, g2), T._randint(53, g2))
    with pytest.raises(ValueError, match="border"):
        T.random_crop_position(50, 60, 8, g1, border=1.5)


def test_paired_dataset_border_crops_keep_pairs_aligned(tmp_path):
    lr_d, hr_d = _paired(tmp_path)
    ds = PairedFolderDataset(lr_d, hr_d, 2, crop=16, seed=1, augment=False, border=1.0)
    for i in range(len(ds)):
        lr, hr = ds[i]
        assert torch.equal(lr, hr[:, ::2, ::2])  # still the pair's own pixels
        full = torch.from_numpy(np.array(Image.open(hr_d / f"{ds.names[i]}.png"))).permute(2, 0, 1).float() / 255
        H, W = full.shape[-2] // 2 * 2, full.shape[-1] // 2 * 2  # the dataset's mod-crop
        corners = [full[:, :16, :16], full[:, :16, W - 16:], full[:, H - 16:, :16], full[:, H - 16:, W - 16:]]
        assert any(torch.equal(hr, c) for c in corners)  # border=1: always in a corner


# ----------------------------------------------------------------------------- LR from the crop


def test_lr_from_crop_is_the_patch_downscaled_alone():
    hr = torch.rand(3, 60, 52)
    full = imresize(T.mod_crop(hr, 4), 1 / 4)
    lr_i, hp_i = T.bicubic_lr_crop(hr, 4, 3, 2, 8)
    lr_c, hp_c = T.bicubic_lr_crop(hr, 4, 3, 2, 8, lr_from="crop")
    assert torch.equal(hp_i, hp_c) and hp_c.shape == (3, 32, 32)
    torch.testing.assert_close(lr_c, imresize(hp_c, 1 / 4), atol=0, rtol=0)
    # 3 LR px inside, beyond the kernel's reach, the two agree; on the patch's edges the
    # crop's own mirror padding differs from the image's content there
    torch.testing.assert_close(lr_c[:, 3:-3, 3:-3], full[:, 6:8, 5:7], atol=1e-5, rtol=0)
    assert (lr_c[:, 0] - lr_i[:, 0]).abs().max() > 1e-3
    # at the image's own corner the whole image's LR and the crop's agree (both mirror there)
    lr_i0, _ = T.bicubic_lr_crop(hr, 4, 0, 0, 6)
    lr_c0, _ = T.bicubic_lr_crop(hr, 4, 0, 0, 6, lr_from="crop")
    torch.testing.assert_close(lr_c0[:, :3, :3], lr_i0[:, :3, :3], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="lr_from"):
        T.bicubic_lr_crop(hr, 4, 0, 0, 6, lr_from="tile")


def test_hr_dataset_lr_from_crop(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [(f"i{k}", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)) for k in range(3)]
    ds = HRFolderDataset(imgs, 4, crop=16, seed=2, augment=True, lr_from="crop")
    base = HRFolderDataset(imgs, 4, crop=16, seed=2, augment=True)
    for i in range(len(ds)):
        lr, hr = ds[i]
        assert torch.equal(hr, base[i][1])  # same crops and augmentations as the default stream
        # the LR is the (augmented) HR patch downscaled alone, rounded to uint8
        torch.testing.assert_close(lr, T.quantize(imresize(hr, 1 / 4)), atol=1e-6, rtol=0)
    assert not torch.equal(ds[0][0], base[0][0])
    with pytest.raises(DataError, match="lr_from"):
        HRFolderDataset(imgs, 4, crop=16, lr_from="tile")
