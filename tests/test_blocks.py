import pytest
import torch

from gradguide.nn.blocks import RRDB, PixelShuffleUp, ResidualDenseBlock, UpConv, make_upsampler, upsample_factors
from gradguide.nn.branch import GradientBranch
from gradguide.nn.fusion import LRFusion, PaperFusion


def _all_grads(module):
    return [n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]


def test_rrdb_and_rdb_shapes_and_grads():
    x = torch.rand(2, 8, 6, 5)
    for m in (ResidualDenseBlock(8, 4), RRDB(8, 4)):
        y = m(x)
        assert y.shape == x.shape
        y.mean().backward()
        assert _all_grads(m) == []


@pytest.mark.parametrize("scale,factors", [(1, []), (2, [2]), (3, [3]), (4, [2, 2]), (8, [2, 2, 2])])
def test_upsample_factors(scale, factors):
    assert upsample_factors(scale) == factors


def test_upsample_factors_rejects_odd_scales():
    with pytest.raises(ValueError, match="scale"):
        upsample_factors(5)


@pytest.mark.parametrize("kind", ["nearest", "pixelshuffle"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upsamplers(kind, scale):
    up = make_upsampler(4, scale, kind)
    assert up(torch.rand(1, 4, 5, 6)).shape == (1, 4, 5 * scale, 6 * scale)
    with pytest.raises(ValueError, match="kind"):
        make_upsampler(4, 2, "bilinear")


def test_upconv_is_nearest_then_conv():
    up = UpConv(2, 2, 2, act=False)
    x = torch.rand(1, 2, 3, 3)
    ref = up.conv(torch.repeat_interleave(torch.repeat_interleave(x, 2, -1), 2, -2))
    assert torch.allclose(up(x), ref)
    assert PixelShuffleUp(2, 3, 2)(x).shape == (1, 3, 6, 6)


def test_branch_custom_block_and_grads():
    from gradguide.nn.blocks import ResidualDenseBlock as RDB

    br = GradientBranch([8, 6], width=4, scale=2, block=lambda c: RDB(c, 4))
    assert isinstance(br.stages[0].block, RDB)
    feats, grad = br(torch.rand(1, 3, 5, 5), [torch.rand(1, 8, 5, 5), torch.rand(1, 6, 5, 5)])
    assert feats.shape == (1, 4, 10, 10) and grad.shape == (1, 3, 10, 10)
    (feats.mean() + grad.mean()).backward()
    assert _all_grads(br) == []
    with pytest.raises(ValueError, match="taps"):
        br(torch.rand(1, 3, 5, 5), [torch.rand(1, 8, 5, 5)])
    with pytest.raises(ValueError, match="LR size"):
        br(torch.rand(1, 3, 5, 5), [torch.rand(1, 8, 5, 5), torch.rand(1, 6, 10, 10)])


def test_fusions():
    pf = PaperFusion(6, 4, 3, block=lambda c: RRDB(c, 4))
    y = pf(torch.rand(1, 4, 8, 8), torch.rand(1, 6, 8, 8))
    assert y.shape == (1, 3, 8, 8)
    y.mean().backward()
    assert _all_grads(pf) == []
    assert pf.proj not in pf.warmup_modules()  # official warm-up: f_* only
    lf = LRFusion(6, 4)
    f = torch.rand(1, 6, 5, 5)
    assert torch.equal(lf(torch.rand(1, 4, 5, 5), f), f)  # zero-initialised output
