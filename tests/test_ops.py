import pytest
import torch
import torch.nn.functional as F

from gradguide.ops import GradientMap, gradient_map


def _reference(x, eps=1e-6, pad=1):
    # the official formulation: a [-1,0,1] cross-correlation per channel, zero padding
    kv = torch.tensor([[0, -1, 0], [0, 0, 0], [0, 1, 0]], dtype=x.dtype).view(1, 1, 3, 3)
    kh = torch.tensor([[0, 0, 0], [-1, 0, 1], [0, 0, 0]], dtype=x.dtype).view(1, 1, 3, 3)
    outs = []
    for c in range(x.shape[1]):
        xc = x[:, c : c + 1]
        v = F.conv2d(xc, kv, padding=pad)
        h = F.conv2d(xc, kh, padding=pad)
        outs.append(torch.sqrt(v**2 + h**2 + eps))
    return torch.cat(outs, 1)


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_matches_official_per_channel_convolution(channels):
    x = torch.rand(2, channels, 11, 9)
    assert torch.allclose(gradient_map(x), _reference(x), atol=1e-7)


def test_official_loss_quirk_is_two_pixels_larger():
    x = torch.rand(1, 3, 8, 10)
    y = gradient_map(x, padding="official_loss")
    assert y.shape == (1, 3, 10, 12)
    assert torch.allclose(y, _reference(x, pad=2), atol=1e-7)


def test_central_difference_values():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, :, 3] = 1.0  # vertical step edge
    g = gradient_map(x, eps=0.0)
    # I(x+1) - I(x-1): column 2 and column 4 see the step
    assert torch.allclose(g[0, 0, 2], torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0]))


def test_replicate_padding_has_no_border_artifact():
    x = torch.full((1, 3, 6, 6), 0.7)
    assert torch.allclose(gradient_map(x, padding="replicate", eps=0.0), torch.zeros(1, 3, 6, 6))
    assert gradient_map(x, padding="zeros", eps=0.0)[0, 0, 0, 0] > 0  # zero padding sees an edge


def test_gradcheck_and_dtypes():
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gradient_map(t), (x,))
    assert torch.autograd.gradcheck(lambda t: gradient_map(t, padding="reflect"), (x,))
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        assert gradient_map(torch.rand(1, 3, 4, 4, dtype=dt)).dtype == dt


def test_module_twin_and_errors():
    m = GradientMap(padding="replicate")
    x = torch.rand(2, 3, 7, 7)
    assert torch.equal(m(x), gradient_map(x, padding="replicate"))
    assert "replicate" in repr(m)
    with pytest.raises(ValueError, match="padding"):
        gradient_map(x, padding="circular")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        gradient_map(torch.rand(3, 7, 7))
    with pytest.raises(TypeError, match="floating"):
        gradient_map(torch.ones(1, 1, 3, 3, dtype=torch.int64))
    assert len(list(m.parameters())) == 0


def test_symmetric_pad_is_numpys_symmetric_mode():
    import numpy as np

    from gradguide.ops import symmetric_pad

    x = torch.rand(2, 3, 5, 7)
    for p in (1, 3, 5):
        ref = np.pad(x.numpy(), ((0, 0), (0, 0), (p, p), (p, p)), mode="symmetric")
        assert np.array_equal(symmetric_pad(x, p).numpy(), ref)
    assert symmetric_pad(x, 0) is x
    with pytest.raises(ValueError, match="exceeds"):
        symmetric_pad(x, 6)
    with pytest.raises(ValueError, match=">= 0"):
        symmetric_pad(x, -1)
