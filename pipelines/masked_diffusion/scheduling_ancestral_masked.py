"""The T-step ancestral sampler of masked diffusion models (MDLM, arXiv 2406.07524; arXiv 2409.02908 Eq. 10)."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from hfgen.validation import check_arguments, check_forbidden_tokens, check_step_in_plan

from ..utils import HfgenSchedulerMixin
from .masking import MASKING_SCHEDULES, SAMPLING_DTYPES, alpha, denoiser_logits, sample_categorical
from .scheduling_first_hitting import step_output


class AncestralMaskedScheduler(HfgenSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""MDLM's reverse process on a uniform grid ``1 = t_0 > t_1 > ... > t_T = 0``.

    At step ``t -> s`` every masked position draws from the ``(V + 1)``-way categorical (Eq. 10)

        ``x_s ~ Cat(((1 - alpha_s) e_m + (alpha_s - alpha_t) mu(x_t)) / (1 - alpha_t))``

    and visible tokens are copied. Every step draws over all ``L x (V + 1)`` entries, which is the
    cost the first-hitting sampler removes; racing tokens of mass ``(alpha_s - alpha_t) mu_v``
    against the mask class of mass ``1 - alpha_s`` is where float32 truncation bites (Sec. 5).
    The last step ends at ``t = 0`` (``alpha = 1``) and so unmasks whatever is left by sampling,
    not by MDLM's final argmax. Pair it with the pipeline's cache (MDLM's ``ddpm_cache``): a step in
    which no token changed reuses the previous network output.

    Memory: the draw runs over batch rows in chunks of at most ``max_draw_elements`` (``2**25``) entries of
    ``L x (V + 1)`` (at least one row), so besides the model's logits a step holds a handful (at most five) of such
    buffers in ``sampling_dtype`` (float64: 256 MiB each; at ``L = 1024``, ``V = 50,257`` one row, 0.4 GB each) whatever the
    batch size.

    Args:
        masking_schedule (`str`, defaults to `"linear"`): ``alpha(t)``; one of ``"linear"``,
            ``"cosine"``, ``"loglinear"``.
        sampling_dtype (`str`, defaults to `"float64"`): precision of the categorical draw.
        schedule_eps (`float`, defaults to 1e-3): ``eps`` of the loglinear schedule.
    """

    _compatibles = ["FirstHittingScheduler"]
    order = 1
    max_draw_elements = 2**25

    @register_to_config
    def __init__(self, masking_schedule: str = "linear", sampling_dtype: str = "float64", schedule_eps: float = 1e-3):
        check_arguments(AncestralMaskedScheduler.__init__, locals())  # types and finiteness, from the signature
        if masking_schedule not in MASKING_SCHEDULES:
            raise ValueError(f"`masking_schedule` must be one of {MASKING_SCHEDULES}, got {masking_schedule!r}.")
        if sampling_dtype not in SAMPLING_DTYPES:
            raise ValueError(f"`sampling_dtype` must be one of {sorted(SAMPLING_DTYPES)}, got {sampling_dtype!r}.")
        if not 0 < schedule_eps < 1:
            raise ValueError(f"`schedule_eps` must lie in (0, 1), got {schedule_eps!r}.")
        self.timesteps = None
        self._grid = None
        self._step_index = None

    def set_timesteps(self, num_inference_steps=None, device=None, num_masked=None, generator=None):
        """Uniform grid of ``num_inference_steps`` (default 1000, MDLM's ``T``) steps from 1 to 0.

        ``num_masked`` and ``generator`` are accepted for the pipeline's uniform call and unused.
        """
        num_inference_steps = 1000 if num_inference_steps is None else num_inference_steps
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer or None, got {num_inference_steps!r}.")
        self._grid = torch.linspace(1, 0, num_inference_steps + 1, dtype=torch.float64, device=device)
        self.timesteps = self._grid[:-1]
        self.num_inference_steps = num_inference_steps
        self._step_index = 0

    def step(self, model_output, timestep, sample, mask_token_id, temperature=1.0, forbidden_tokens=None,
             generator=None, return_dict=True):
        """One reverse step ``t_i -> t_{i+1}`` (Eq. 10); arguments as in ``FirstHittingScheduler.step``."""
        check_step_in_plan(self._step_index, len(self.timesteps) if self.timesteps is not None else 0)
        if tuple(model_output.shape[:2]) != tuple(sample.shape):
            raise ValueError(f"`model_output` must be [batch, seq_len, vocab] over `sample` {tuple(sample.shape)}, "
                             f"got {tuple(model_output.shape)}.")
        check_forbidden_tokens(forbidden_tokens, mask_token_id, model_output.shape[-1])
        schedule, eps = self.config.masking_schedule, self.config.schedule_eps
        dtype = SAMPLING_DTYPES[self.config.sampling_dtype]
        grid = self._grid.to(model_output.device)  # the time grid lives with the model's outputs
        t, s = grid[self._step_index], grid[self._step_index + 1]
        self._step_index += 1
        alpha_t, alpha_s = alpha(schedule, t, eps), alpha(schedule, s, eps)
        log_unmask = (torch.log(alpha_s - alpha_t) - torch.log1p(-alpha_t)).to(dtype)
        log_stay = (torch.log1p(-alpha_s) - torch.log1p(-alpha_t)).to(dtype)
        batch, length, vocab = model_output.shape
        rows = max(1, self.max_draw_elements // (length * (vocab + 1)))
        draws = []
        for start in range(0, batch, rows):  # bounded memory: a few [rows, L, V + 1] float buffers at a time
            chunk = slice(start, start + rows)
            logits = denoiser_logits(model_output[chunk], mask_token_id, temperature, forbidden_tokens, dtype)
            log_probs = torch.log_softmax(logits, dim=-1).add_(log_unmask)  # [rows, L, V]
            log_probs = torch.cat([log_probs, log_stay.expand(*log_probs.shape[:2], 1)], dim=-1)
            chunk_generator = generator[chunk] if isinstance(generator, list) else generator
            draws.append(sample_categorical(log_probs, chunk_generator, dtype))
        draw = torch.cat(draws)
        x_s = torch.where(draw == vocab, mask_token_id, draw)  # class V is "stay masked"
        prev_sample = torch.where(sample == mask_token_id, x_s, sample)
        return step_output(sample, prev_sample, model_output, mask_token_id, return_dict)
