"""The first-hitting sampler (FHS) of masked diffusion models (arXiv 2409.02908, Sec. 4.2-4.3)."""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from .masking import (
    MASKING_SCHEDULES,
    SAMPLING_DTYPES,
    alpha,
    alpha_inverse,
    denoiser_logits,
    sample_categorical,
    uniform,
)


class FirstHittingScheduler(SchedulerMixin, ConfigMixin):
    r"""Exact simulation of the continuous-time reverse process of a masked diffusion model.

    Every masked token carries an independent unmasking clock, so with ``n`` tokens still masked at
    time ``tau_n`` the next one unmasks at (Prop. 4.1, Eq. 11)

        ``tau_{n-1} = alpha^{-1}(1 - u^{1/n} (1 - alpha(tau_n)))``,  ``u ~ U(0, 1)``,

    at a masked position chosen uniformly, with its token drawn from the denoiser evaluated at
    ``tau_{n-1}``. A sequence with ``L`` masked tokens takes exactly ``L`` network calls and one
    ``V``-way draw per call, with no discretisation error. With ``tokens_per_step = k > 1`` (Sec. 4.3,
    parallel decoding) ``k`` positions are unmasked from one network call, conditionally
    independently, in ``ceil(L / k)`` calls; the network sees the time of the group's first hit.

    Because the hitting times do not depend on the tokens, [`set_timesteps`] draws them all up
    front: ``timesteps[j, b]`` is the time at which row ``b`` calls the network at step ``j``.

    Args:
        masking_schedule (`str`, defaults to `"linear"`): ``alpha(t)``; one of ``"linear"``,
            ``"cosine"``, ``"loglinear"`` (MDLM's ``1 - (1 - eps) t``). Only the times depend on it;
            with a time-agnostic denoiser (any masked LM) the samples do not.
        tokens_per_step (`int`, defaults to 1): tokens unmasked per network call (1 is exact FHS).
        sampling_dtype (`str`, defaults to `"float64"`): precision of the categorical draw;
            ``"float32"`` reproduces the truncated sampling of earlier code bases.
        schedule_eps (`float`, defaults to 1e-3): ``eps`` of the loglinear schedule.
    """

    _compatibles = ["AncestralMaskedScheduler"]
    order = 1

    @register_to_config
    def __init__(
        self,
        masking_schedule: str = "linear",
        tokens_per_step: int = 1,
        sampling_dtype: str = "float64",
        schedule_eps: float = 1e-3,
    ):
        if masking_schedule not in MASKING_SCHEDULES:
            raise ValueError(f"`masking_schedule` must be one of {MASKING_SCHEDULES}, got {masking_schedule!r}.")
        if not isinstance(tokens_per_step, int) or tokens_per_step < 1:
            raise ValueError(f"`tokens_per_step` must be a positive integer, got {tokens_per_step!r}.")
        if sampling_dtype not in SAMPLING_DTYPES:
            raise ValueError(f"`sampling_dtype` must be one of {sorted(SAMPLING_DTYPES)}, got {sampling_dtype!r}.")
        if not 0 < schedule_eps < 1:
            raise ValueError(f"`schedule_eps` must lie in (0, 1), got {schedule_eps!r}.")
        self.timesteps = None
        self.hit_times = None
        self.unmask_counts = None
        self._step_index = None

    def _alpha(self, t):
        return alpha(self.config.masking_schedule, t, self.config.schedule_eps)

    def set_timesteps(self, num_inference_steps=None, device=None, num_masked=None, generator=None):
        """Draw every row's unmasking times and group them into network calls.

        Args:
            num_inference_steps (`int`, *optional*): network calls for the row with the most masked
                tokens; ``None`` uses ``tokens_per_step`` from the config (``1``: exact FHS).
            device: where ``timesteps`` live.
            num_masked (`torch.LongTensor` of shape `(batch_size,)`): masked tokens in each row.
            generator: one `torch.Generator` or one per row.
        """
        if num_masked is None:
            raise ValueError("`num_masked` (masked tokens per row) is required by the first-hitting sampler.")
        n = torch.as_tensor(num_masked)
        if n.dtype.is_floating_point or n.dtype == torch.bool or n.numel() == 0 or bool((n < 0).any()):
            raise ValueError(f"`num_masked` must be a non-empty integer tensor of counts >= 0, got {num_masked!r}.")
        n = n.long().reshape(-1)
        n_max = int(n.max())
        if num_inference_steps is None:
            k = self.config.tokens_per_step
        elif isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer or None, got {num_inference_steps!r}.")
        else:
            k = max(1, math.ceil(n_max / num_inference_steps))
        # Lemma C.1 / Eq. 29: 1 - alpha(tau_{m-1}) = (1 - alpha(tau_m)) u_m^{1/m} for m = n, ..., 1,
        # i.e. the order statistics of n i.i.d. clocks, drawn from the latest without sorting.
        m = n[:, None] - torch.arange(n_max)  # [B, n_max] masked count before each hit
        u = uniform((len(n), n_max), generator, torch.float64)
        log_rate = torch.where(m > 0, torch.log(u) / m.clamp(min=1), torch.zeros(()))
        one = torch.ones((), dtype=torch.float64)
        log_survival = torch.log1p(-self._alpha(one)) + log_rate.cumsum(dim=1)
        hits = alpha_inverse(self.config.masking_schedule, -torch.expm1(log_survival), self.config.schedule_eps)
        self.hit_times = torch.where(m > 0, hits, torch.zeros(())).to(device)  # [B, n_max], decreasing
        self.timesteps = self.hit_times[:, ::k].T.contiguous()  # [steps, B]: first hit of each group
        start = k * torch.arange(len(self.timesteps))[:, None]
        self.unmask_counts = (n[None] - start).clamp(0, k).to(device)  # [steps, B]
        self.num_inference_steps = len(self.timesteps)
        self._step_index = 0

    def step(self, model_output, timestep, sample, mask_token_id, temperature=1.0, forbidden_tokens=None,
             generator=None, return_dict=True):
        """Unmask this step's positions, chosen uniformly among the masked ones.

        Only the chosen positions' logits are read: O(k V) work per step, not O(L V).

        Args:
            model_output (`torch.Tensor` of shape `(batch_size, seq_len, vocab_size)`): denoiser
                logits at ``timestep``.
            timestep: this step's times (unused here; the pipeline passed them to the denoiser).
            sample (`torch.LongTensor` of shape `(batch_size, seq_len)`): the current ``x_t``.
            mask_token_id (`int`): the mask token ``m``, never drawn.
            temperature (`float`, defaults to 1.0): divides the logits.
            forbidden_tokens (`torch.BoolTensor` of shape `(vocab_size,)`, *optional*): never drawn.
            generator: one `torch.Generator` or one per row.
        """
        if self._step_index is None:
            raise ValueError("Call `set_timesteps` before `step`.")
        if sample.ndim != 2 or sample.shape[0] != self.unmask_counts.shape[1]:
            raise ValueError(f"`sample` must be [batch, seq_len] with the batch of `set_timesteps` "
                             f"({self.unmask_counts.shape[1]}), got {tuple(sample.shape)}.")
        if tuple(model_output.shape[:2]) != tuple(sample.shape):
            raise ValueError(f"`model_output` must be [batch, seq_len, vocab] over `sample` {tuple(sample.shape)}, "
                             f"got {tuple(model_output.shape)}.")
        counts = self.unmask_counts[self._step_index].to(sample.device)  # [B]
        self._step_index += 1
        k = int(counts.max())
        if k == 0:
            return SchedulerOutput(prev_sample=sample) if return_dict else (sample,)
        is_masked = sample == mask_token_id
        keys = uniform(sample.shape, generator, torch.float64, sample.device).masked_fill(~is_masked, -1.0)
        positions = keys.topk(k, dim=1).indices  # [B, k] a uniform random subset of the masked positions
        chosen = torch.arange(k, device=sample.device) < counts[:, None]
        dtype = SAMPLING_DTYPES[self.config.sampling_dtype]
        logits = model_output.gather(1, positions[..., None].expand(-1, -1, model_output.shape[-1]))  # [B, k, V]
        tokens = sample_categorical(denoiser_logits(logits, mask_token_id, temperature, forbidden_tokens, dtype),
                                    generator, dtype)
        prev_sample = sample.scatter(1, positions, torch.where(chosen, tokens, sample.gather(1, positions)))
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)
