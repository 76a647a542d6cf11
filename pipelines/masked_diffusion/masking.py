"""The masked-diffusion forward process and accurate categorical sampling (arXiv 2409.02908).

Masking schedules: ``alpha(t)`` is the probability that a clean token is still visible at time
``t``; it decreases from ``alpha(0) = 1``. Each token is masked independently (Eq. 1):
``q(x_t | x_0) = Cat(alpha_t e_{x_0} + (1 - alpha_t) e_m)``.

Categorical sampling is the Gumbel-max trick written as the exponential race that MDLM and SEDD
use, ``argmax_i log pi_i - log E_i`` with ``E_i = -log U_i``. Its precision is the precision of
``U``: float32 uniforms are multiples of 2^-24, so ``E >= 5.96e-8`` and a class whose mass is below
about 2^-24 of the winner's is (almost) never drawn (Sec. 5). Sampling in float64 removes this.
"""

from __future__ import annotations

import math

import torch

MASKING_SCHEDULES = ("linear", "cosine", "loglinear")
SAMPLING_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def alpha(schedule: str, t: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """alpha(t): linear ``1 - t``, cosine ``cos(pi t / 2)``, MDLM's loglinear ``1 - (1 - eps) t``."""
    if schedule == "linear":
        return 1 - t
    if schedule == "cosine":
        return torch.cos(0.5 * math.pi * t)
    if schedule == "loglinear":
        return 1 - (1 - eps) * t
    raise ValueError(f"`masking_schedule` must be one of {MASKING_SCHEDULES}, got {schedule!r}.")


def alpha_inverse(schedule: str, a: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The time ``t`` with ``alpha(t) = a``."""
    if schedule == "linear":
        return 1 - a
    if schedule == "cosine":
        return torch.arccos(a.clamp(-1, 1)) * (2 / math.pi)
    if schedule == "loglinear":
        return (1 - a) / (1 - eps)
    raise ValueError(f"`masking_schedule` must be one of {MASKING_SCHEDULES}, got {schedule!r}.")


def total_noise(schedule: str, t: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``sigma(t) = -log alpha(t)``, the time input of MDLM's time-conditioned backbone (MDLM's
    ``noise(t)[0]``; for the loglinear schedule ``-log(1 - (1 - eps) t)``, finite at ``t = 1``)."""
    if schedule == "loglinear":
        return -torch.log1p(-(1 - eps) * t)
    return -torch.log(alpha(schedule, t, eps))


TIME_INPUTS = ("t", "sigma")


def time_keyword(model, time_input: str) -> str:
    """The ``forward`` argument a time-conditioned ``model`` receives its time through.

    ``sigma(t)`` goes to a ``sigma`` argument where ``forward`` has one (``MDLMDiTForMaskedLM``, whose
    ``timesteps`` are ``t`` and are mapped to ``sigma`` by the model itself: giving it ``sigma`` there would map
    ``sigma`` again); everything else goes to ``timesteps``.
    """
    import inspect

    forward = getattr(model, "forward", model)
    return "sigma" if time_input == "sigma" and "sigma" in inspect.signature(forward).parameters else "timesteps"


def elbo_weight(schedule: str, t: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The NELBO weight ``-alpha'(t) / (1 - alpha(t))`` of Eq. 6 (``1/t`` for the linear schedule)."""
    if schedule in ("linear", "loglinear"):  # 1 - alpha(t) = (1 - eps) t and -alpha'(t) = 1 - eps
        return 1 / t
    if schedule == "cosine":
        return 0.5 * math.pi * torch.sin(0.5 * math.pi * t) / (1 - torch.cos(0.5 * math.pi * t))
    raise ValueError(f"`masking_schedule` must be one of {MASKING_SCHEDULES}, got {schedule!r}.")


def uniform(shape, generator=None, dtype=torch.float64, device=None) -> torch.Tensor:
    """``U[0, 1)`` of ``shape`` in ``dtype`` on ``device``; a list of generators draws row ``b`` from ``generator[b]``.

    As Diffusers' ``randn_tensor``: the numbers are drawn on the generator's own device, then moved to
    ``device`` (without a generator, on ``device`` directly), so a CPU generator gives the same numbers
    whatever device the model runs on, and a CUDA generator works with CPU-side draws (the hitting times).
    """
    if isinstance(generator, list):
        rows = [torch.rand((1, *shape[1:]), generator=g, dtype=dtype, device=g.device) for g in generator]
        return torch.cat([row.to(device) for row in rows])
    if generator is None:
        return torch.rand(shape, dtype=dtype, device=device)
    return torch.rand(shape, generator=generator, dtype=dtype, device=generator.device).to(device)


def denoiser_logits(logits, mask_token_id, temperature=1.0, forbidden_tokens=None, dtype=torch.float64):
    """``log mu`` up to a constant, in ``dtype``: no mass on the mask (Eq. 4) nor on ``forbidden_tokens``,
    logits divided by ``temperature``."""
    if not temperature > 0:
        raise ValueError(f"`temperature` must be positive, got {temperature!r}.")
    logits = logits.to(dtype) / temperature
    forbidden = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    forbidden[mask_token_id] = True
    if forbidden_tokens is not None:
        forbidden |= forbidden_tokens
    return logits.masked_fill(forbidden, -torch.inf)


def sample_categorical(log_probs: torch.Tensor, generator=None, dtype=torch.float64) -> torch.Tensor:
    """Draw from ``Cat(softmax(log_probs))`` over the last axis with noise in ``dtype``.

    ``log_probs`` may be unnormalised (``-inf`` marks impossible classes). In float32 this is the
    truncated race of MDLM's ``_sample_categorical``; in float64 it is accurate to 2^-53.
    """
    noise = uniform(log_probs.shape, generator, dtype, log_probs.device)
    noise.log_().neg_().log_()  # log E with E = -log U ~ Exp(1)
    return noise.neg_().add_(log_probs.to(dtype)).argmax(dim=-1)
