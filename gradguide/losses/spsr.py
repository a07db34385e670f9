"""The SPSR generator objective (Eq. 10) and the discriminator objectives.

Its terms are the loss modules of this package. Extra terms (a new loss file in this
package, or a plugin's) register through the ``gradguide_losses`` hook as a
:class:`~gradguide.registry.LossEntry` with ``term=True`` and are switched on by weight
(``SPSRLoss(terms={"name": w})``, recipe ``[loss.terms]``): nothing else changes.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Literal, Mapping, NamedTuple, Optional, Union

import torch
from torch import Tensor, nn

from ..errors import WeightsNotFoundError
from ..ops import PADDINGS, Padding, gradient_map
from ..plugins import registries
from ..registry import LossEntry
from ..types import SROutput, as_output
from ._common import CRITERIA, Criterion, _check_choice, _check_image, _check_pair, _check_weight
from .adversarial import ragan_d_loss, ragan_g_loss
from .gradient import branch_loss
from .perceptual import VGGFeatureExtractor, perceptual_loss
from .pixel import pixel_loss

__all__ = ["GeneratorLoss", "DiscriminatorLoss", "SPSRLoss", "TermOrder", "TERM_ORDERS", "build_term", "LOSSES"]

#: How the G step orders its work. ``"default"``: pixel, perceptual, image GAN, then
#: ``M(SR)``, gradient pixel, gradient GAN, branch; totals summed in one reduction.
#: ``"official"``: as the official SPSR code's ``optimize_parameters``: ``M(SR)`` first,
#: then pixel, perceptual, gradient pixel, branch, image GAN, gradient GAN, each
#: discriminator run on the fake before the real, the total summed term by term in that
#: order. The order decides in which order autograd sums the terms' gradients into the
#: SR image (and the BatchNorm running statistics of the discriminators), so only
#: ``"official"`` can track the reference bitwise beyond the first step.
TermOrder = Literal["default", "official"]
TERM_ORDERS: tuple[str, ...] = ("default", "official")


def build_term(name: str, **options: Any) -> nn.Module:
    """The registered extra term ``name`` (a ``LossEntry`` with ``term=True``), built with
    ``options``; its ``forward(out: SROutput, hr: Tensor)`` returns an unweighted scalar."""
    losses = registries().losses
    if name not in losses or not losses.get(name).term:
        known = ", ".join(n for n, e in losses.items() if e.term) or "(none)"
        raise ValueError(f"SPSRLoss: unknown extra term {name!r}; registered terms: {known}")
    return losses.get(name).factory(**options)


class GeneratorLoss(NamedTuple):
    """What :meth:`SPSRLoss.forward` returns.

    Attributes:
        total: the weighted sum (scalar, float32, with graph) to ``backward()``.
        terms: weighted value of every computed term as a float, keyed ``pixel``,
            ``perceptual``, ``gan``, ``gradient_pixel``, ``gradient_gan``, ``branch``,
            plus ``total``. Disabled terms are absent.
        sr_grad: ``M(SR)`` as used by the gradient terms (with graph), or ``None`` when no
            gradient term is on. Pass it to :meth:`SPSRLoss.discriminator_loss` to avoid
            recomputing it (it is detached there).
        hr_grad: ``M(HR)`` likewise (no graph).
        real_logits, real_grad_logits: ``D_I(HR)`` and ``D_GM(M(HR))`` with the
            discriminators' graph, when ``forward(..., keep_real=True)``; pass them to
            :meth:`SPSRLoss.discriminator_loss` so that the D step does not run the
            discriminators on the real batch again (``None`` otherwise).
    """

    total: Tensor
    terms: dict
    sr_grad: Optional[Tensor]
    hr_grad: Optional[Tensor]
    real_logits: Optional[Tensor] = None
    real_grad_logits: Optional[Tensor] = None


class DiscriminatorLoss(NamedTuple):
    """What :meth:`SPSRLoss.discriminator_loss` returns: ``total`` to ``backward()``
    (sum of the D_I and D_GM RaGAN losses; their parameters are disjoint) and float
    ``terms`` (``d_image``, ``d_grad``, mean logits ``d_image_real``/``d_image_fake``,
    ``d_grad_real``/``d_grad_fake``, ``total``)."""

    total: Tensor
    terms: dict


@contextlib.contextmanager
def _trainable(module: nn.Module):
    """``module``'s parameters require grad inside the block (the G step freezes the
    discriminators); their previous flags come back after it."""
    params = list(module.parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield module
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def _g_adversarial(d: nn.Module, fake_in: Tensor, real_in: Tensor, *, keep_real: bool, fake_first: bool) -> tuple[Tensor, Optional[Tensor]]:
    """The G step's RaGAN term on one discriminator, and ``D(real)`` with D's graph when
    ``keep_real`` (for the D step). ``fake_first``: the official code's order."""
    if fake_first:
        fake = d(fake_in)
    if keep_real:
        with _trainable(d):
            real = d(real_in.detach())
    else:
        with torch.no_grad():
            real = d(real_in.detach())
    if not fake_first:
        fake = d(fake_in)
    return ragan_g_loss(real.detach(), fake), (real if keep_real else None)


def _floats(named: dict[str, Tensor]) -> dict[str, float]:
    # One host sync for all logged terms.
    if not named:
        return {}
    vals = torch.stack([v.detach().float().reshape(()) for v in named.values()]).tolist()
    return dict(zip(named.keys(), vals))


class SPSRLoss(nn.Module):
    """The SPSR generator objective (Eq. 10) and the two discriminator objectives
    (Eq. 5 and 8, as RaGAN).

    ``L_G = perceptual * L_Per + pixel * L_Pix_I + gan * L_Adv_I + gradient_pixel * L_Pix_GM
    + gradient_gan * L_Adv_GM + branch * L_GB``, with the paper's defaults
    1, 0.01, 0.005, 0.01, 0.005, 0.5. A weight of 0 disables its term: it is not
    computed, and its network (VGG19, D_I, D_GM) is not needed. The PSNR-oriented and
    ESRGAN objectives are this class with weights set (:meth:`psnr`, :meth:`esrgan`);
    :meth:`official` reproduces the official code's choices.

    Args:
        pixel, perceptual, gan, gradient_pixel, gradient_gan, branch: term weights
            (``beta_I``, 1, ``gamma_I``, ``beta_GM``, ``gamma_GM``, ``beta_GB``).
        pixel_criterion, perceptual_criterion, gradient_criterion, branch_criterion:
            ``"l1"``/``"mse"``/``"charbonnier"`` (the paper: L1 everywhere; the official
            code: MSE for ``gradient_pixel``).
        gradient_padding: padding of ``M`` for the gradient pixel and gradient GAN terms
            (``"zeros"``; the official code: ``"official_loss"``, maps 2 px larger).
        term_order: ``"default"`` or ``"official"`` (:data:`TERM_ORDERS`): the order of
            the G step's work; ``"official"`` is the reference code's (needed to follow it
            bitwise after step 1).
        branch_padding: padding of ``M(HR)``, the branch target (``"zeros"``, as the
            generator's own operator).
        eps: the operator's epsilon.
        perceptual_layer, vgg_weights: the VGG19 layer and weights file (``None``: the
            torch hub cache).
        on_missing_vgg: ``"error"`` (default) raises :class:`WeightsNotFoundError` when the
            VGG19 file is missing; ``"drop"`` warns and sets the perceptual weight to 0.
        feature_extractor: a ready feature network used instead of VGG19.
        terms: extra generator terms registered through the ``gradguide_losses`` hook as
            :class:`~gradguide.registry.LossEntry` with ``term=True``, by name:
            ``{"name": weight}`` or ``{"name": {"weight": w, **factory_options}}``
            (recipe: ``[loss.terms]``). Each is ``weight * module(out, hr)``, logged
            under its name.

    The discriminators are passed to the calls, not owned: :meth:`forward` (the G step)
    and :meth:`discriminator_loss` (the D step).
    """

    def __init__(
        self,
        *,
        pixel: float = 0.01,
        perceptual: float = 1.0,
        gan: float = 0.005,
        gradient_pixel: float = 0.01,
        gradient_gan: float = 0.005,
        branch: float = 0.5,
        pixel_criterion: Criterion = "l1",
        perceptual_criterion: Criterion = "l1",
        gradient_criterion: Criterion = "l1",
        branch_criterion: Criterion = "l1",
        gradient_padding: Padding = "zeros",
        term_order: TermOrder = "default",
        branch_padding: Padding = "zeros",
        eps: float = 1e-6,
        perceptual_layer: str = "conv5_4",
        vgg_weights: Union[str, os.PathLike, None] = None,
        on_missing_vgg: Literal["error", "drop"] = "error",
        feature_extractor: Optional[nn.Module] = None,
        terms: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.pixel = _check_weight(pixel, "SPSRLoss: pixel")
        self.perceptual = _check_weight(perceptual, "SPSRLoss: perceptual")
        self.gan = _check_weight(gan, "SPSRLoss: gan")
        self.gradient_pixel = _check_weight(gradient_pixel, "SPSRLoss: gradient_pixel")
        self.gradient_gan = _check_weight(gradient_gan, "SPSRLoss: gradient_gan")
        self.branch = _check_weight(branch, "SPSRLoss: branch")
        self.pixel_criterion = _check_choice(pixel_criterion, CRITERIA, "SPSRLoss: pixel_criterion")
        self.perceptual_criterion = _check_choice(perceptual_criterion, CRITERIA, "SPSRLoss: perceptual_criterion")
        self.gradient_criterion = _check_choice(gradient_criterion, CRITERIA, "SPSRLoss: gradient_criterion")
        self.branch_criterion = _check_choice(branch_criterion, CRITERIA, "SPSRLoss: branch_criterion")
        self.gradient_padding = _check_choice(gradient_padding, PADDINGS, "SPSRLoss: gradient_padding")
        self.branch_padding = _check_choice(branch_padding, PADDINGS, "SPSRLoss: branch_padding")
        self.term_order = _check_choice(term_order, TERM_ORDERS, "SPSRLoss: term_order")
        self.eps = float(eps)
        _check_choice(on_missing_vgg, ("error", "drop"), "SPSRLoss: on_missing_vgg")
        self.feature_extractor: Optional[nn.Module] = None
        if self.perceptual > 0:
            if feature_extractor is not None:
                self.feature_extractor = feature_extractor.requires_grad_(False).eval()
            else:
                try:
                    self.feature_extractor = VGGFeatureExtractor(perceptual_layer, weights=vgg_weights)
                except WeightsNotFoundError as exc:
                    if on_missing_vgg == "error":
                        raise
                    warnings.warn(f"perceptual term dropped (weight set to 0): {exc}", RuntimeWarning, stacklevel=2)
                    self.perceptual = 0.0
        self.extra_weights: dict[str, float] = {}
        self.extra = nn.ModuleDict()
        for name, spec in dict(terms or {}).items():
            weight, options = (spec.get("weight", 1.0), {k: v for k, v in spec.items() if k != "weight"}) if isinstance(spec, Mapping) else (spec, {})
            weight = _check_weight(weight, f"SPSRLoss: terms.{name}")
            if weight > 0:
                self.extra[name] = build_term(name, **options)
                self.extra_weights[name] = weight

    # ---- presets

    @classmethod
    def paper(cls, **kw) -> "SPSRLoss":
        """The paper's objective (the defaults)."""
        return cls(**kw)

    @classmethod
    def official(cls, **kw) -> "SPSRLoss":
        """The official code's choices: MSE gradient pixel loss, pad-2 loss-side ``M``, and
        its order of work in the G step (``term_order="official"``)."""
        kw.setdefault("gradient_criterion", "mse")
        kw.setdefault("gradient_padding", "official_loss")
        kw.setdefault("term_order", "official")
        return cls(**kw)

    @classmethod
    def esrgan(cls, **kw) -> "SPSRLoss":
        """ESRGAN: perceptual + pixel + image GAN, no gradient terms."""
        for k in ("gradient_pixel", "gradient_gan", "branch"):
            kw.setdefault(k, 0.0)
        return cls(**kw)

    @classmethod
    def psnr(cls, *, pixel: float = 1.0, **kw) -> "SPSRLoss":
        """PSNR-oriented pre-training: pixel loss only (plus the branch loss if ``branch``
        is given a weight)."""
        for k in ("perceptual", "gan", "gradient_pixel", "gradient_gan", "branch"):
            kw.setdefault(k, 0.0)
        return cls(pixel=pixel, **kw)

    # ---- what is needed

    @property
    def needs_image_discriminator(self) -> bool:
        return self.gan > 0

    @property
    def needs_gradient_discriminator(self) -> bool:
        return self.gradient_gan > 0

    @property
    def needs_ema(self) -> bool:
        """Some extra term takes the EMA generator's output (``forward(..., ema_sr=)``)."""
        return any(getattr(m, "uses_ema", False) for m in self.extra.values())

    @property
    def uses_gradient_maps(self) -> bool:
        return self.gradient_pixel > 0 or self.gradient_gan > 0

    def gradient_maps(self, sr: Tensor, hr: Tensor) -> tuple[Tensor, Tensor]:
        """``(M(sr), M(hr))`` with the loss-side padding, in float32; ``M(hr)`` without graph."""
        g_sr = gradient_map(sr.float(), padding=self.gradient_padding, eps=self.eps)
        with torch.no_grad():
            g_hr = gradient_map(hr.float(), padding=self.gradient_padding, eps=self.eps)
        return g_sr, g_hr

    # ---- G step

    def forward(
        self,
        out: Union[SROutput, Tensor],
        hr: Tensor,
        d_image: Optional[nn.Module] = None,
        d_grad: Optional[nn.Module] = None,
        *,
        ema_sr: Optional[Tensor] = None,
        keep_real: bool = False,
    ) -> GeneratorLoss:
        """The generator loss (Eq. 10).

        Args:
            out: the generator's :class:`~gradguide.types.SROutput` (or a plain SR tensor).
                ``out.sr``: ``(B, C, H, W)``; ``out.grad``: ``(B, C, H, W)`` or ``None``
                (the branch term is then skipped).
            hr: HR batch ``(B, C, H, W)``, same shape as ``out.sr``.
            d_image: ``D_I`` (required when ``gan > 0``). Its real logits are taken
                without autograd; freeze its parameters during the G step yourself.
            d_grad: ``D_GM`` (required when ``gradient_gan > 0``).
            ema_sr: the EMA generator's SR on the same batch, for extra terms that
                declare ``uses_ema = True`` (e.g. ``ldl``; see :attr:`needs_ema`).
            keep_real: run the discriminators on the real batch with their graph and
                return those logits (:class:`GeneratorLoss` ``real_logits``,
                ``real_grad_logits``) for the D step, which then skips its own real
                pass: each discriminator sees HR once per step instead of twice. Not with
                ``term_order="official"`` (the reference runs them twice).
        """
        out = as_output(out, "SPSRLoss: out")
        sr = out.sr
        _check_image(sr, "SPSRLoss", "out.sr")
        _check_pair(sr, hr, "SPSRLoss", "out.sr", "hr")
        if self.gan > 0 and d_image is None:
            raise ValueError(f"SPSRLoss: gan weight is {self.gan} but no d_image discriminator was given")
        if self.gradient_gan > 0 and d_grad is None:
            raise ValueError(f"SPSRLoss: gradient_gan weight is {self.gradient_gan} but no d_grad discriminator was given")
        official = self.term_order == "official"
        if keep_real and official:
            raise ValueError("SPSRLoss: keep_real changes the order of the discriminators' passes; "
                             "term_order='official' keeps the reference's (drop keep_real)")
        sr32 = sr.float()
        hr32 = hr.detach().float()
        parts: dict[str, Tensor] = {}
        real = real_g = None
        g_sr = g_hr = None
        if official and self.uses_gradient_maps:  # the reference builds M(SR) before any term
            g_sr, g_hr = self.gradient_maps(sr32, hr32)
        if self.pixel > 0:
            parts["pixel"] = self.pixel * pixel_loss(sr32, hr32, criterion=self.pixel_criterion)
        if self.perceptual > 0:
            assert self.feature_extractor is not None
            parts["perceptual"] = self.perceptual * perceptual_loss(
                sr, hr.detach(), self.feature_extractor, criterion=self.perceptual_criterion
            ).float()
        if self.gan > 0 and not official:
            g, real = _g_adversarial(d_image, sr, hr, keep_real=keep_real, fake_first=False)
            parts["gan"] = self.gan * g
        if self.uses_gradient_maps and g_sr is None:
            g_sr, g_hr = self.gradient_maps(sr32, hr32)
        if self.gradient_pixel > 0:
            parts["gradient_pixel"] = self.gradient_pixel * pixel_loss(g_sr, g_hr, criterion=self.gradient_criterion)
        if self.gradient_gan > 0 and not official:
            g, real_g = _g_adversarial(d_grad, g_sr, g_hr, keep_real=keep_real, fake_first=False)
            parts["gradient_gan"] = self.gradient_gan * g
        if self.branch > 0 and out.grad is not None:
            if g_hr is not None and self.branch_padding == self.gradient_padding:
                target = g_hr
            else:
                with torch.no_grad():
                    target = gradient_map(hr32, padding=self.branch_padding, eps=self.eps)
            parts["branch"] = self.branch * branch_loss(out.grad.float(), hr32, criterion=self.branch_criterion, target=target)
        if official:  # the adversarial terms last, each discriminator on the fake first
            if self.gan > 0:
                parts["gan"] = self.gan * _g_adversarial(d_image, sr, hr, keep_real=False, fake_first=True)[0]
            if self.gradient_gan > 0:
                parts["gradient_gan"] = self.gradient_gan * _g_adversarial(d_grad, g_sr, g_hr, keep_real=False, fake_first=True)[0]
        for name, module in self.extra.items():
            value = module(out, hr, ema_sr=ema_sr) if getattr(module, "uses_ema", False) else module(out, hr)
            parts[name] = self.extra_weights[name] * value.float()
        if not parts:
            total = sr32.sum() * 0.0
        elif official:  # term by term, as `l_g_total += ...`
            values = list(parts.values())
            total = values[0].reshape(())
            for v in values[1:]:
                total = total + v.reshape(())
        else:
            total = torch.stack([p.reshape(()) for p in parts.values()]).sum()
        terms = _floats({**parts, "total": total})
        return GeneratorLoss(total, terms, g_sr, g_hr, real, real_g)

    generator_loss = forward

    # ---- D step

    def discriminator_loss(
        self,
        out: Union[SROutput, Tensor],
        hr: Tensor,
        d_image: Optional[nn.Module] = None,
        d_grad: Optional[nn.Module] = None,
        *,
        sr_grad: Optional[Tensor] = None,
        hr_grad: Optional[Tensor] = None,
        real_logits: Optional[Tensor] = None,
        real_grad_logits: Optional[Tensor] = None,
    ) -> DiscriminatorLoss:
        """RaGAN losses of ``D_I`` (Eq. 5) on images and ``D_GM`` (Eq. 8) on gradient maps.

        ``out.sr`` (and ``sr_grad``) are detached here, so only the discriminators get
        gradients. A discriminator whose weight (``gan`` / ``gradient_gan``) is 0 is not
        called. ``sr_grad``/``hr_grad``: the maps from :class:`GeneratorLoss`, to reuse;
        ``real_logits``/``real_grad_logits``: its real logits (``forward(keep_real=True)``),
        used instead of running the discriminators on the real batch again.
        Returns a :class:`DiscriminatorLoss`; ``total`` is unweighted (each D's own loss).
        """
        out = as_output(out, "SPSRLoss: out")
        sr = out.sr.detach()
        _check_image(sr, "SPSRLoss.discriminator_loss", "out.sr")
        _check_pair(sr, hr, "SPSRLoss.discriminator_loss", "out.sr", "hr")
        parts: dict[str, Tensor] = {}
        logs: dict[str, Tensor] = {}
        if self.gan > 0:
            if d_image is None:
                raise ValueError(f"SPSRLoss: gan weight is {self.gan} but no d_image discriminator was given")
            real = d_image(hr.detach()) if real_logits is None else real_logits
            fake = d_image(sr)
            parts["d_image"] = ragan_d_loss(real, fake)
            logs["d_image_real"] = real.detach().float().mean()
            logs["d_image_fake"] = fake.detach().float().mean()
        if self.gradient_gan > 0:
            if d_grad is None:
                raise ValueError(f"SPSRLoss: gradient_gan weight is {self.gradient_gan} but no d_grad discriminator was given")
            if sr_grad is None or (hr_grad is None and real_grad_logits is None):
                g_sr, g_hr = self.gradient_maps(sr, hr.detach())
                sr_grad = g_sr if sr_grad is None else sr_grad
                hr_grad = g_hr if hr_grad is None else hr_grad
            real_g = d_grad(hr_grad.detach()) if real_grad_logits is None else real_grad_logits
            fake_g = d_grad(sr_grad.detach())
            parts["d_grad"] = ragan_d_loss(real_g, fake_g)
            logs["d_grad_real"] = real_g.detach().float().mean()
            logs["d_grad_fake"] = fake_g.detach().float().mean()
        if parts:
            total = torch.stack([p.reshape(()) for p in parts.values()]).sum()
        else:
            total = torch.zeros((), device=sr.device)
        terms = _floats({**parts, **logs, "total": total})
        return DiscriminatorLoss(total, terms)

    def extra_repr(self) -> str:
        return (
            f"pixel={self.pixel}, perceptual={self.perceptual}, gan={self.gan}, gradient_pixel={self.gradient_pixel}, "
            f"gradient_gan={self.gradient_gan}, branch={self.branch}, gradient_criterion={self.gradient_criterion!r}, "
            f"gradient_padding={self.gradient_padding!r}, term_order={self.term_order!r}"
        )


LOSSES = [LossEntry("spsr", SPSRLoss, "the full SPSR objective (Eq. 10)")]
