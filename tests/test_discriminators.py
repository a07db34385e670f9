import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from gradguide import plugins
from gradguide.discriminators import (
    UNetDiscriminatorSN,
    VGGDiscriminator,
    create_discriminator,
    list_discriminators,
    vgg_output_size,
)
from gradguide.hookspecs import hookimpl
from gradguide.registry import DiscriminatorEntry


pytestmark = pytest.mark.usefixtures("one_thread")


def _all_params_get_grads(d, size):
    torch.manual_seed(0)
    real, fake = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size)
    # a standard (non-relativistic) GAN loss, so the last bias is trained too
    lr, lf = d(real), d(fake)
    (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))
     + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))).backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_vgg_output_size():
    assert [vgg_output_size(n) for n in (128, 132, 96, 64, 32)] == [4, 4, 3, 2, 1]


def test_vgg128_layout_and_shapes():
    d = VGGDiscriminator(3, 4)  # input_size=128
    keys = set(d.state_dict())
    assert {"conv0_0.weight", "conv0_0.bias", "conv0_1.weight", "bn0_1.weight", "conv4_1.weight", "bn4_1.running_mean",
            "linear1.weight", "linear2.bias"} <= keys
    assert "bn0_0.weight" not in keys and "conv1_0.bias" not in keys
    assert d.linear1.weight.shape == (100, 32 * 4 * 4)
    assert d(torch.rand(2, 3, 128, 128)).shape == (2, 1)
    assert d(torch.rand(2, 3, 132, 132)).shape == (2, 1)  # official pad-2 gradient maps
    with pytest.raises(ValueError, match="input_size=128"):
        d(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        d(torch.rand(1, 1, 128, 128))


@pytest.mark.parametrize("size", [64, 96])
def test_vgg_small_crops(size):
    d = VGGDiscriminator(3, 2, input_size=size)
    assert d.linear1.in_features == 16 * vgg_output_size(size) ** 2
    _all_params_get_grads(d, size)


def test_vgg_bad_args():
    with pytest.raises(ValueError, match="input_size"):
        VGGDiscriminator(input_size=16)
    with pytest.raises(ValueError, match="nf"):
        VGGDiscriminator(3, 0)


def test_unet_sn_shapes_and_gradients():
    d = UNetDiscriminatorSN(3, 4)
    assert parametrize.is_parametrized(d.conv1, "weight") and not parametrize.is_parametrized(d.conv0)
    assert d(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    assert d(torch.rand(1, 3, 34, 34)).shape == (1, 1, 34, 34)  # odd intermediate sizes
    assert UNetDiscriminatorSN(3, 4, skip_connection=False)(torch.rand(1, 3, 16, 24)).shape == (1, 1, 16, 24)
    _all_params_get_grads(d, 32)
    with pytest.raises(ValueError, match=">= 8"):
        d(torch.rand(1, 3, 4, 4))


def test_unet_sn_spectral_norm_bounds_weights():
    d = UNetDiscriminatorSN(3, 4)
    for _ in range(3):
        d(torch.rand(1, 3, 16, 16))
    d.eval()
    w = d.conv3.weight.detach().flatten(1)
    sigma = torch.linalg.matrix_norm(w, ord=2).item()
    assert sigma == pytest.approx(1.0, abs=0.05)


def test_registry_create_and_list():
    assert {"vgg128", "unet_sn"} <= set(list_discriminators())
    d = create_discriminator("vgg128", in_channels=3, nf=2, input_size=32)
    assert isinstance(d, VGGDiscriminator) and d.feature_size == 1
    assert isinstance(create_discriminator("unet_sn", nf=2), UNetDiscriminatorSN)
    with pytest.raises(KeyError, match="unet_sn"):
        create_discriminator("patchgan")


def test_duplicate_name_from_plugin_is_reported(fresh_plugin_manager):
    class Rogue:
        @hookimpl
        def gradguide_discriminators(self):
            return [DiscriminatorEntry("vgg128", lambda **kw: None)]

    fresh_plugin_manager.register(Rogue(), name="zz_rogue")
    regs = plugins.registries()
    assert regs.discriminators.owner("vgg128") != "zz_rogue"
    assert any(p.plugin == "zz_rogue" and "vgg128" in p.reason for p in regs.problems)
    assert isinstance(create_discriminator("vgg128", nf=2), VGGDiscriminator)


def test_vgg128_official_has_pre_bn_biases_that_bn_removes():
    d = create_discriminator("vgg128_official", nf=2, input_size=32)
    plain = VGGDiscriminator(3, 2, input_size=32)
    conv_bias = {k for k in d.state_dict() if k.startswith("conv") and k.endswith(".bias")}
    assert conv_bias == {f"conv{i}_{j}.bias" for i in range(5) for j in (0, 1)}
    assert not {k for k in plain.state_dict() if k.startswith("conv") and k.endswith(".bias")} - {"conv0_0.bias"}
    assert "bn_conv_bias=True" in repr(d)
    # the same weights with random pre-BN biases: BatchNorm (train mode) removes them
    missing, unexpected = d.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and set(missing) == conv_bias - {"conv0_0.bias"}
    with torch.no_grad():
        for k in missing:
            d.get_parameter(k).uniform_(-1, 1)
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(d(x), plain(x), rtol=1e-4, atol=1e-5)
    # every parameter gets a gradient; a pre-BN bias only rounding noise (why Adam moves it)
    d.zero_grad(set_to_none=True)
    F.binary_cross_entropy_with_logits(d(x), torch.ones(4, 1)).backward()
    for name, p in d.named_parameters():
        assert p.grad is not None, name
        if name in missing:
            assert p.grad.abs().max() < 1e-5, name
        elif name != "linear2.bias":
            assert p.grad.abs().sum() > 0, name
