"""Fuzzing what a stranger can hand gradguide: checkpoint bytes, image bytes, recipe values.

Every case must end in a valid result or in one clean error line (a
:class:`~gradguide.errors.GradguideError` whose message is one line, names the file or
key, and has no ANSI codes); never in another exception (a traceback for the user).
While a case runs the process may not grow its data segment by more than
:data:`ALLOC_BOUND` (enforced with ``RLIMIT_DATA``: a larger allocation fails and the
case fails with it), and the input file must be byte-identical afterwards, with nothing
written beside it.

Budget: the whole module runs in well under a minute on two CPU cores (``max_examples``
below); set ``GRADGUIDE_FUZZ_EXAMPLES`` to fuzz longer locally.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import gradguide
from gradguide.errors import GradguideError
from gradguide.imageio import read_image

pytestmark = pytest.mark.usefixtures("one_thread")

#: the most a single fuzz case may add to the process's data segment
ALLOC_BOUND = 1 << 30  # 1 GiB (the 1.2 MB checkpoint claimed 23 GB)
N = int(os.environ.get("GRADGUIDE_FUZZ_EXAMPLES", "0")) or None

FUZZ = settings(
    max_examples=N or 60,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),  # CI: the same cases every run; locally: new ones each time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


def _vm_data() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def bounded_allocation(extra: int = ALLOC_BOUND):
    """Cap the data segment at its current size + ``extra`` (Linux); no-op elsewhere."""
    if not os.path.exists("/proc/self/status"):
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_DATA)
    cap = _vm_data() + extra
    if old[1] != resource.RLIM_INFINITY:
        cap = min(cap, old[1])
    resource.setrlimit(resource.RLIMIT_DATA, (cap, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, old)


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def check_clean(fn, path: Path, *names: str):
    """Run ``fn()``; return its result, or the GradguideError it raised after checking the
    message is one short clean line naming ``path``. Any other exception fails the test."""
    before = _snapshot(path.parent)
    try:
        with bounded_allocation():
            out = fn()
    except GradguideError as exc:
        msg = str(exc)
        assert "\n" not in msg and "\x1b" not in msg, repr(msg)
        assert len(msg) < 600, msg
        assert any(n in msg for n in (str(path), path.name, *names)), msg
        out = exc
    finally:
        assert _snapshot(path.parent) == before, "the input (or its folder) changed"
    return out


# ------------------------------------------------------------------------- checkpoints
def _tiny_model():
    torch.manual_seed(0)
    return gradguide.create_spsr(nf=4, nb=1, gc=4, scale=2)


@functools.lru_cache(maxsize=None)
def valid_checkpoints() -> dict:
    from gradguide.checkpoints import canonical_safetensors
    from gradguide.models.rrdb import RRDBNet  # noqa: F401
    from safetensors.torch import save as save_bytes

    from gradguide.checkpoints import architecture_of

    net = _tiny_model()
    arch, cfg = architecture_of(net)
    meta = {"format": "gradguide", "gradguide.arch": arch, "gradguide.config": json.dumps(cfg, sort_keys=True), "scale": "2"}
    st_bytes = canonical_safetensors(save_bytes({k: v.contiguous() for k, v in net.state_dict().items()}, metadata=meta))
    buf = io.BytesIO()
    from gradguide.models.rrdb import RRDBNet

    torch.manual_seed(0)
    torch.save({"params_ema": RRDBNet(nf=4, nb=1, gc=4, scale=2).state_dict()}, buf)  # BasicSR layout
    return {"safetensors": st_bytes, "pth": buf.getvalue()}


def _safetensors_with(meta: dict, tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)


def _mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "header"]))
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[: draw(st.integers(0, len(b)))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "splice":
        i = draw(st.integers(0, len(b)))
        return bytes(b[:i]) + draw(st.binary(max_size=64)) + bytes(b[i:])
    n = int.from_bytes(b[:8], "little") if len(b) >= 8 else 0  # rewrite the claimed header length
    claim = draw(st.sampled_from([n * 1000, 2**63 - 1, 0, n - 1, n + 8])) % 2**64
    return claim.to_bytes(8, "little") + bytes(b[8:])


@st.composite
def checkpoint_files(draw):
    valid = valid_checkpoints()
    how = draw(st.sampled_from(["mutated-safetensors", "mutated-pth", "random", "claims", "claims"]))
    suffix = draw(st.sampled_from([".safetensors", ".pth", ".pt", ".ckpt"]))
    if how == "mutated-safetensors":
        return _mutate(valid["safetensors"], draw), suffix
    if how == "mutated-pth":
        return _mutate(valid["pth"], draw), suffix
    if how == "random":
        prefix = draw(st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]))
        return prefix + draw(st.binary(max_size=256)), suffix
    # a small, well-formed file whose metadata claims an architecture and configuration
    big = st.integers(min_value=-5, max_value=10**6)
    cfg = draw(st.fixed_dictionaries({}, optional={k: st.one_of(big, st.floats(), st.text(max_size=4), st.none()) for k in ("nf", "nb", "gc", "scale", "in_nc", "out_nc")}))
    arch = draw(st.sampled_from(["spsr", "rrdbnet", "guided", "edsr", "nope", ""]))
    meta = {"format": "gradguide", "gradguide.arch": arch, "gradguide.config": json.dumps(cfg)}
    if draw(st.booleans()):
        meta["scale"] = str(draw(big))
    n = draw(st.integers(0, 3))
    tensors = {f"t{i}": torch.full((draw(st.integers(0, 4)),), draw(st.floats(allow_nan=True, width=32))) for i in range(n)}
    if draw(st.booleans()):  # the real tensor names, right or wrong shapes
        sd = _tiny_model().state_dict()
        tensors.update({k: v for k, v in sd.items() if draw(st.booleans())})
    return _safetensors_with(meta, tensors), ".safetensors"


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_bytes(tmp_path_factory, data):
    blob, suffix = data.draw(checkpoint_files())
    d = tmp_path_factory.mktemp("fz")
    p = d / f"fuzz{suffix}"
    p.write_bytes(blob)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-finite weights and x2/x3 ambiguity are warnings
        out = check_clean(lambda: gradguide.load(p), p)
    if not isinstance(out, GradguideError):
        assert isinstance(out, torch.nn.Module)
        # the loaded model holds exactly as many numbers as the file did (nothing claimed was allocated)
        assert sum(t.numel() for t in out.state_dict().values()) <= len(blob)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="the cap needs Linux (RLIMIT_DATA, /proc)")
def test_fuzz_checkpoint_bound_is_enforced():
    """The allocation bound is real: a 2 GiB allocation inside it fails."""
    with pytest.raises((MemoryError, RuntimeError)):
        with bounded_allocation(256 << 20):
            torch.ones(1 << 29, dtype=torch.float32).sum()


# ------------------------------------------------------------------------------ images
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_claiming(w: int, h: int, depth: int, ctype: int, body: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(body)) + _png_chunk(b"IEND", b"")


@functools.lru_cache(maxsize=None)
def valid_images() -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for fmt, mode, ext in (("PNG", "RGB", ".png"), ("PNG", "LA", ".png"), ("JPEG", "RGB", ".jpg"), ("BMP", "RGB", ".bmp"), ("TIFF", "RGBA", ".tif"), ("WEBP", "RGB", ".webp")):
        arr = rng.integers(0, 255, (6, 7, len(mode)), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode).save(buf, format=fmt)
        out[(fmt, mode)] = (buf.getvalue(), ext)
    import imagecodecs

    out[("PNG", "RGB16")] = (imagecodecs.png_encode(rng.integers(0, 65535, (5, 4, 3), dtype=np.uint16)), ".png")
    return out


@st.composite
def image_files(draw):
    valid = valid_images()
    how = draw(st.sampled_from(["mutated", "mutated", "random", "claims"]))
    if how == "mutated":
        data, ext = draw(st.sampled_from(sorted(valid.values())))
        return _mutate_image(data, draw), ext
    if how == "random":
        prefix = draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]))
        return prefix + draw(st.binary(max_size=256)), draw(st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif"]))
    w, h = draw(st.integers(0, 2**31)), draw(st.integers(0, 2**31))
    return _png_claiming(w, h, draw(st.sampled_from([1, 8, 16, 3])), draw(st.sampled_from([0, 2, 3, 4, 6, 7])), draw(st.binary(max_size=512))), ".png"


def _mutate_image(data: bytes, draw) -> bytes:
    b = bytearray(data)
    kind = draw(st.sampled_from(["truncate", "flip", "splice"]))
    if kind == "truncate":
        return bytes(b[: draw(st.integers(0, len(b)))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    i = draw(st.integers(0, len(b)))
    return bytes(b[:i]) + draw(st.binary(max_size=32)) + bytes(b[i:])


MAX_PIXELS = 1 << 16


@FUZZ
@given(data=st.data())
def test_fuzz_image_bytes(tmp_path_factory, data):
    blob, ext = data.draw(image_files())
    d = tmp_path_factory.mktemp("im")
    p = d / f"fuzz{ext}"
    p.write_bytes(blob)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = check_clean(lambda: read_image(p, max_pixels=MAX_PIXELS), p)
    assert not caught, [str(w.message) for w in caught]  # nothing leaks into the user's output
    if not isinstance(out, GradguideError):
        h, w = out.size
        assert 1 <= h * w <= MAX_PIXELS
        assert out.rgb.shape == (3, h, w) and out.rgb.dtype == torch.float32
        assert bool(torch.isfinite(out.rgb).all()) and float(out.rgb.min()) >= 0 and float(out.rgb.max()) <= 1
        if out.alpha is not None:
            assert out.alpha.shape == (1, h, w) and bool(torch.isfinite(out.alpha).all())


class _Tiny(torch.nn.Module):
    scale = 2

    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")


@settings(FUZZ, max_examples=max(10, (N or 60) // 4))
@given(data=st.data())
def test_fuzz_upscale_batch_goes_on_and_leaves_inputs_alone(tmp_path_factory, data):
    blob, ext = data.draw(image_files())
    d = tmp_path_factory.mktemp("up")
    src = d / "in"
    src.mkdir()
    (src / f"fuzz{ext}").write_bytes(blob)
    good, _ = valid_images()[("PNG", "RGB")]
    (src / "good.png").write_bytes(good)
    before = _snapshot(src)
    with bounded_allocation():
        res = gradguide.upscale(_Tiny(), [str(src)], d / "out", max_pixels=MAX_PIXELS, tile=None, progress=False)
    assert _snapshot(src) == before
    by = {r.input.name: r for r in res}
    assert by["good.png"].written
    for r in res:
        assert r.written or r.exists or (r.error and "\n" not in r.error and r.input.name in r.error)


# ----------------------------------------------------------------------------- recipes
from gradguide.train import recipe as R  # noqa: E402

#: text a user could type as a key (no control characters: those are escaped by repr in values)
_key_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=16)
_SECTIONS = {name: [f.name for f in __import__("dataclasses").fields(cls)] for name, cls in R._SECTIONS.items()}
_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12),
        st.sampled_from([0, -1, 1, 2, 4, 1e-4, 0.5, 1.0, math.nan, math.inf, "", "rrdbnet", "paper", "l1", "max"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


#: strings that TOML writers get wrong
_TRICKY = ["a\nb", "tab\there", 'quote"d', "back\\slash", "del\x7f", "\u00e9\U0001F600", "'single'", "[x]", "a = 1", "\x00"]
_WORDS = ["", "rrdbnet", "spsr", "wrap", "paper", "lr", "none", "l1", "mse", "charbonnier", "max", "min", "psnr_y",
          "ssim_y", "folder", "skimage", "bf16", "fp16", "cpu", "auto", "vgg128", "unet_sn", "error", "drop", "zeros"]


def _field_values(default):
    """Mostly values of the field's own type (plausible and edge cases), sometimes anything."""
    if isinstance(default, bool):
        typed = st.booleans()
    elif isinstance(default, int):
        typed = st.one_of(st.just(default), st.integers(0, 2 * default + 2), st.sampled_from([-1, 0, 2**63]))
    elif isinstance(default, float):
        typed = st.one_of(st.just(default), st.floats(0, 1), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e-12, 1e300]))
    elif isinstance(default, str):
        typed = st.one_of(st.just(default), st.sampled_from(_WORDS), st.text(max_size=8))
    elif isinstance(default, list):
        typed = st.one_of(st.just(default), st.lists(st.integers(-1, 10**6), max_size=4), st.lists(st.floats(), min_size=2, max_size=2))
    elif isinstance(default, dict):
        typed = st.one_of(
            st.just(default),
            st.dictionaries(st.sampled_from(["nf", "nb", "gc", "num_feat", "x.y", "a b", "", "é"]), st.one_of(st.integers(-1, 8), st.floats(), st.text(max_size=4)), max_size=3),
        )
    else:
        typed = _values
    return st.one_of(typed, typed, typed, _values)


@st.composite
def recipe_dicts(draw):
    data: dict = {}
    for section, cls in R._SECTIONS.items():
        if draw(st.booleans()):
            defaults = {f.name: getattr(cls(), f.name) for f in __import__("dataclasses").fields(cls)}
            chosen = draw(st.lists(st.sampled_from(sorted(defaults)), max_size=4, unique=True))
            table = {k: draw(_field_values(defaults[k])) for k in chosen}
            if draw(st.sampled_from([False] * 9 + [True])):
                table[draw(_key_text.filter(bool))] = draw(_values)  # an unknown key
            data[section] = table
    if draw(st.sampled_from([False] * 9 + [True])):
        data[draw(_key_text.filter(bool))] = draw(_values)
    for k in ("name", "description"):
        if draw(st.booleans()):
            data[k] = draw(st.one_of(st.text(max_size=20), st.sampled_from(_TRICKY), _values))
    return data


def _finite_everywhere(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite_everywhere(v) for v in value)
    if isinstance(value, dict):
        return all(_finite_everywhere(v) for v in value.values())
    return True


def _check_recipe_error(exc: GradguideError, source: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and "\x1b" not in msg and len(msg) < 600, msg
    assert source in msg or msg.startswith("--set"), msg


@FUZZ
@given(data=recipe_dicts())
def test_fuzz_recipe_values(tmp_path_factory, data):
    try:
        with bounded_allocation():
            recipe = R.recipe_from_dict(data, "fuzz.toml").validate()
    except GradguideError as exc:
        _check_recipe_error(exc, "fuzz.toml")
        return
    # a valid recipe: every number finite, sizes positive, and it survives the trip
    # through recipe.toml (what --resume RUN_DIR reads back)
    d = R.recipe_to_dict(recipe)
    assert _finite_everywhere(d)
    assert recipe.train.iterations >= 1 and recipe.train.batch_size >= 1 and recipe.data.crop >= 1
    assert 0 < recipe.optim.lr_g < 1 and 0 < recipe.optim.lr_d < 1
    p = tmp_path_factory.mktemp("rc") / "recipe.toml"
    p.write_text(R.recipe_to_toml(recipe), encoding="utf-8")
    back = R.load_recipe(p)
    assert R.recipe_to_dict(back) == {**d, "name": d["name"] or "recipe"}  # an empty name becomes the file's stem


_override_values = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e400", "[1, 2]", "[]", "{a = 1}", "true", '"x"', "", "1e-4", "2"]),
    st.text(max_size=10),
)


@FUZZ
@given(
    key=st.one_of(
        st.sampled_from([f"{s}.{k}" for s, ks in _SECTIONS.items() for k in ks] + ["model.backbone_config.nf", "model.backbone_config.nb"]),
        _key_text,
    ),
    value=_override_values,
)
def test_fuzz_recipe_overrides(key, value):
    base = R.recipe_from_dict({"model": {"scale": 2}, "data": {"crop": 16}, "val": {"every": 0}}, "fuzz.toml").validate()
    try:
        with bounded_allocation():
            recipe = R.apply_overrides(base, [f"{key}={value}"])
    except GradguideError as exc:
        _check_recipe_error(exc, "fuzz.toml")
        return
    assert _finite_everywhere(R.recipe_to_dict(recipe))
