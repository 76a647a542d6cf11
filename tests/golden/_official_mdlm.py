"""Transcription of MDLM's ancestral sampling step, for the golden tests (test fixture, not library code).

Source: kuleshov-group/mdlm @ c112c526d193436838c98d81455ee51f90309470
- ``diffusion.py``: ``_sample_categorical`` (L24-28), ``Diffusion._subs_parameterization`` (L261-277),
  ``Diffusion._ddpm_update`` (L612-637).
- ``noise_schedule.py``: ``LogLinearNoise`` (L126-151).

Changes from the source, all mechanical: methods become functions taking what they read from ``self``
(``mask_index``, ``noise``, ``forward``) as arguments; ``torch.rand_like`` is an argument (default
``torch.rand_like``) so a test can feed the same uniforms to both sides. The arithmetic is unchanged.
"""

import torch


def _sample_categorical(categorical_probs, rand_like=torch.rand_like):
    gumbel_norm = (
        1e-10
        - (rand_like(categorical_probs) + 1e-10).log())
    return (categorical_probs / gumbel_norm).argmax(dim=-1)


class LogLinearNoise:
    """``total_noise(t) = -log(1 - (1 - eps) t)``; ``__call__`` returns ``(total_noise, rate_noise)`` like ``Noise.forward``."""

    def __init__(self, eps=1e-3):
        self.eps = eps

    def rate_noise(self, t):
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def total_noise(self, t):
        return -torch.log1p(-(1 - self.eps) * t)

    def __call__(self, t):
        return self.total_noise(t), self.rate_noise(t)


NEG_INFINITY = -1000000.0  # Diffusion.neg_infinity


def subs_parameterization(logits, xt, mask_index):
    # log prob at the mask index = - infinity
    logits[:, :, mask_index] += NEG_INFINITY
    # Normalize the logits such that x.exp() is
    # a probability distribution over vocab_size.
    logits = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    # For the logits of the unmasked tokens, set all values
    # to -infinity except for the indices corresponding to
    # the unmasked tokens.
    unmasked_indices = (xt != mask_index)
    logits[unmasked_indices] = NEG_INFINITY
    logits[unmasked_indices, xt[unmasked_indices]] = 0
    return logits


def ddpm_update(x, t, dt, *, noise, forward, mask_index, rand_like=torch.rand_like):
    """``Diffusion._ddpm_update``: ``forward(x, sigma)`` returns ``log p_x0`` (SUBS-parameterised)."""
    sigma_t, _ = noise(t)
    sigma_s, _ = noise(t - dt)
    if sigma_t.ndim > 1:
        sigma_t = sigma_t.squeeze(-1)
    if sigma_s.ndim > 1:
        sigma_s = sigma_s.squeeze(-1)
    assert sigma_t.ndim == 1, sigma_t.shape
    assert sigma_s.ndim == 1, sigma_s.shape
    move_chance_t = 1 - torch.exp(-sigma_t)
    move_chance_s = 1 - torch.exp(-sigma_s)
    move_chance_t = move_chance_t[:, None, None]
    move_chance_s = move_chance_s[:, None, None]
    unet_conditioning = sigma_t
    log_p_x0 = forward(x, unet_conditioning)
    assert move_chance_t.ndim == log_p_x0.ndim
    # Technically, this isn't q_xs since there's a division
    # term that is missing. This division term doesn't affect
    # the samples.
    q_xs = log_p_x0.exp() * (move_chance_t
                             - move_chance_s)
    q_xs[:, :, mask_index] = move_chance_s[:, :, 0]
    _x = _sample_categorical(q_xs, rand_like)

    copy_flag = (x != mask_index).to(x.dtype)
    return copy_flag * x + (1 - copy_flag) * _x
