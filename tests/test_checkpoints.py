import pickle
import re

import pytest
import torch
from safetensors.torch import save_file

import gradguide
from gradguide.checkpoints import load_checkpoint, read_state_dict, spsr_to_official
from gradguide.errors import CheckpointError
from gradguide_backbones.rrdb import RRDBNet


def _esrgan_old(sd, nb, n_up):
    """gradguide RRDBNet names -> ESRGAN's original layout (as in RRDB_ESRGAN_x4.pth)."""
    out = {}
    for k, v in sd.items():
        base, _, p = k.rpartition(".")
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)$", base):
            out[f"model.1.sub.{m.group(1)}.RDB{m.group(2)}.conv{m.group(3)}.0.{p}"] = v
        elif base == "conv_first":
            out[f"model.0.{p}"] = v
        elif base == "conv_body":
            out[f"model.1.sub.{nb}.{p}"] = v
        elif m := re.match(r"conv_up(\d)$", base):
            out[f"model.{3 * int(m.group(1))}.{p}"] = v
        elif base == "conv_hr":
            out[f"model.{3 * n_up + 2}.{p}"] = v
        elif base == "conv_last":
            out[f"model.{3 * n_up + 4}.{p}"] = v
    return out


def _mmsr(sd):
    ren = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for k, v in sd.items():
        base, _, p = k.rpartition(".")
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)$", base):
            out[f"RRDB_trunk.{m.group(1)}.RDB{m.group(2)}.conv{m.group(3)}.{p}"] = v
        else:
            out[f"{ren.get(base, base)}.{p}"] = v
    return out


def _same(a, b, x):
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("scale", [2, 4])
def test_esrgan_old_layout(tmp_path, scale):
    net = RRDBNet(nf=8, nb=3, gc=4, scale=scale).eval()
    torch.save(_esrgan_old(net.state_dict(), 3, len(net.factors)), tmp_path / "RRDB_ESRGAN.pth")
    ck = load_checkpoint(tmp_path / "RRDB_ESRGAN.pth")
    assert ck.report.layout == "esrgan-old" and ck.report.arch == "rrdbnet"
    assert ck.report.config == dict(in_nc=3, out_nc=3, nf=8, nb=3, gc=4, scale=scale)
    assert _same(net, ck.model, torch.rand(1, 3, 6, 6))


def test_basicsr_layout_with_params_ema_wrapper(tmp_path):
    net = RRDBNet(nf=8, nb=2, gc=4, scale=4).eval()
    other = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    torch.save({"params": other, "params_ema": net.state_dict()}, tmp_path / "net_g.pth")
    ck = load_checkpoint(tmp_path / "net_g.pth")
    assert ck.report.layout == "basicsr-rrdbnet" and ck.report.container == "params_ema"
    assert _same(net, ck.model, torch.rand(1, 3, 5, 5))


def test_mmsr_layout_and_dataparallel_prefix(tmp_path):
    net = RRDBNet(nf=8, nb=2, gc=4, scale=4).eval()
    torch.save({"module." + k: v for k, v in _mmsr(net.state_dict()).items()}, tmp_path / "mmsr.pth")
    ck = load_checkpoint(tmp_path / "mmsr.pth")
    assert ck.report.layout == "mmsr-rrdbnet"
    assert _same(net, ck.model, torch.rand(1, 3, 5, 5))


def test_official_layout_report_lists_ignored_keys(tmp_path):
    m = gradguide.create_spsr(nf=4, nb=2, gc=4).eval()
    save_file({k: v.contiguous() for k, v in spsr_to_official(m).items()}, str(tmp_path / "o.safetensors"))
    rep = load_checkpoint(tmp_path / "o.safetensors").report
    assert rep.layout == "spsr-official" and rep.ok
    assert set(rep.ignored) == {"HR_conv0_new.0.weight", "HR_conv0_new.0.bias", "get_g_nopadding.weight_h", "get_g_nopadding.weight_v"}
    assert rep.loaded == len(m.state_dict())


def test_save_load_rrdbnet_roundtrip_keeps_metadata(tmp_path):
    net = RRDBNet(nf=8, nb=2, gc=4, scale=2).eval()
    gradguide.save(net, tmp_path / "r.safetensors", metadata={"note": "hello", "iters": 5})
    sd, meta, _ = read_state_dict(tmp_path / "r.safetensors")
    assert meta["format"] == "gradguide" and meta["gradguide.arch"] == "rrdbnet" and meta["note"] == "hello"
    assert _same(net, gradguide.load(tmp_path / "r.safetensors"), torch.rand(1, 3, 4, 4))
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_and_unexpected_keys_are_named(tmp_path):
    net = RRDBNet(nf=8, nb=2, gc=4, scale=4)
    sd = net.state_dict()
    del sd["conv_hr.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad\.pth.*missing: conv_hr\.bias.*unexpected: extra\.weight"):
        gradguide.load(tmp_path / "bad.pth")
    ck = load_checkpoint(tmp_path / "bad.pth", strict=False)
    assert ck.report.missing == ["conv_hr.bias"] and ck.report.unexpected == ["extra.weight"]


def test_shape_mismatch_into_given_model(tmp_path):
    gradguide.save(RRDBNet(nf=8, nb=2, gc=4), tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        gradguide.load(tmp_path / "a.safetensors", model=RRDBNet(nf=4, nb=2, gc=4))


def test_truncated_files_fail_with_one_line_naming_the_file(tmp_path):
    net = RRDBNet(nf=4, nb=1, gc=4)
    gradguide.save(net, tmp_path / "t.safetensors")
    torch.save(net.state_dict(), tmp_path / "t.pth")
    for name in ("t.safetensors", "t.pth"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError) as ei:
            gradguide.load(tmp_path / name)
        msg = str(ei.value)
        assert name in msg and "\n" not in msg and ("truncated" in msg or "corrupt" in msg)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    torch.save({"w": torch.zeros(1), "obj": _Evil()}, tmp_path / "evil2.pth")
    for name in ("evil.pth", "evil2.pth"):
        with pytest.raises(CheckpointError, match=rf"{name}: refused") as ei:
            gradguide.load(tmp_path / name)
        assert "\n" not in str(ei.value)
    assert "pwned" not in capsys.readouterr().out


def test_unknown_architecture(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "u.pth")
    with pytest.raises(CheckpointError, match=r"u\.pth: unknown architecture") as ei:
        gradguide.load(tmp_path / "u.pth")
    assert "\n" not in str(ei.value)


def test_not_a_file_and_empty(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        gradguide.load(tmp_path / "nope.pth")
    (tmp_path / "e.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        gradguide.load(tmp_path / "e.pth")
