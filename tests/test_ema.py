"""The trainer's EMA: a decay that warms up, so the average never keeps the random start."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gradguide.train.trainer import ema_with_warmup


def _init_share(avg_fn, steps: int) -> float:
    """Fraction of the initial weights still in the average after ``steps`` updates of a
    model whose weights jumped from 0 to 1 right after initialisation."""
    net = nn.Linear(4, 4, bias=False)
    nn.init.zeros_(net.weight)
    ema = AveragedModel(net, multi_avg_fn=avg_fn, use_buffers=True)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update_parameters(net)  # the first update copies (AveragedModel semantics)
    with torch.no_grad():
        net.weight.fill_(1.0)
    with torch.no_grad():
        ema.module.weight.zero_()  # as if the first update had averaged with the start
    for _ in range(steps):
        ema.update_parameters(net)
    return float(1.0 - ema.module.weight.detach().mean())


def test_warmup_forgets_the_random_start():
    # constant decay 0.999: after 2000 updates 13.5 % of the start is still in the average
    assert abs(_init_share(get_ema_multi_avg_fn(0.999), 2000) - 0.999**2000) < 1e-3
    # with the warm-up it is gone long before
    assert _init_share(ema_with_warmup(0.999), 200) < 1e-3
    assert _init_share(ema_with_warmup(0.999), 2000) < 1e-6


def test_warmup_reaches_the_configured_decay():
    upd = ema_with_warmup(0.9)
    e, p = [torch.zeros(3)], [torch.ones(3)]
    upd(e, p, torch.tensor(10_000))  # late: decay 0.9 exactly
    assert torch.allclose(e[0], torch.full((3,), 0.1))
    e = [torch.zeros(3)]
    upd(e, p, torch.tensor(0))  # first averaged update: decay (1 + 0) / (10 + 0) = 0.1
    assert torch.allclose(e[0], torch.full((3,), 0.9))
    ints = [torch.zeros(2, dtype=torch.long)]
    upd(ints, [torch.full((2,), 7, dtype=torch.long)], torch.tensor(5))  # integer buffers are copied
    assert ints[0].tolist() == [7, 7]
