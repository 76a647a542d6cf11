"""Golden tests: hfgen's masked-diffusion samplers against the official MDLM and BD3-LM code.

Identical uniforms go to a transcription of the official function (``_official_mdlm.py``,
``_official_bd3lm.py``) and to hfgen's public path (``MaskedDiffusionPipeline`` with
``AncestralMaskedScheduler`` or ``FirstHittingScheduler``); the tokens must be identical, in float64 and in
float32 sampling, and the first-hitting times equal to float64 rounding.

How the uniforms are shared: hfgen draws every random number through ``masking.uniform``; the tests
replace it by a queue holding, in hfgen's order, the official draws mapped to hfgen's layout:
- ancestral step: MDLM races ``V`` classes with the mask class at ``mask_index`` standing for "stay
  masked"; hfgen races ``V + 1`` classes (the mask class impossible, class ``V`` = "stay"), so hfgen's
  uniforms are MDLM's plus MDLM's mask-column uniform appended as class ``V``;
- first hitting: BD3-LM picks the ``randint(0, n)``-th masked position; hfgen picks the masked position
  with the largest key, so the keys are 1 at BD3-LM's position and 0.5 at the others; the token uniforms
  are BD3-LM's row at that position.

The grid: MDLM's ``_ddpm_update(x, t, dt)`` is called on hfgen's grid ``linspace(1, 0, T + 1)``. MDLM's own
``_sample`` ends at ``t = 1e-5`` and then takes an argmax ("noise removal"); hfgen's last step ends at
``t = 0`` and samples. That loop-level choice is not pinned here (it is documented in the scheduler).

Broken-variant checks (run once, then restored):
- ancestral: the "stay masked" mass taken as ``(1 - alpha_t)/(1 - alpha_t)`` instead of
  ``(1 - alpha_s)/(1 - alpha_t)`` in ``AncestralMaskedScheduler.step``: all 4 cases fail, 13, 15, 4 and 7
  of 64 tokens differ.
- first hitting: ``u ** (1 / (n + 1))`` instead of ``u ** (1 / n)`` in ``FirstHittingScheduler.set_timesteps``:
  all 8 cases fail, the hitting times differ by up to 0.059 (linear) and 0.081 (loglinear).
"""

import contextlib

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import MaskedLMOutput

from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline

from . import _official_bd3lm as bd3lm
from . import _official_mdlm as mdlm

V, L = 12, 8  # vocabulary including the mask, which is the last id (as in MDLM's GPT-2 vocabulary)
MASK = V - 1


class ToyDenoiser(torch.nn.Module):
    """Logits that depend on every visible token (and on the time when ``timed``)."""

    def __init__(self, timed=False, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(2 * torch.randn(L, V, generator=g, dtype=torch.float64))
        self.E = torch.nn.Parameter(torch.randn(V, V, generator=g, dtype=torch.float64))
        self.P = torch.nn.Parameter(torch.randn(L, L, generator=g, dtype=torch.float64))
        self.timed = timed

    @property
    def device(self):
        return self.W.device

    @property
    def dtype(self):
        return self.W.dtype

    def logits(self, input_ids, t=None):
        mixed = torch.einsum("lj,bjv->blv", self.P, self.E[input_ids])
        out = self.W + mixed
        if t is not None:
            out = out * (1 + 3 * t.reshape(-1, 1, 1))
        return out


class AgnosticDenoiser(ToyDenoiser):
    def forward(self, input_ids):
        return MaskedLMOutput(logits=self.logits(input_ids))


class TimedDenoiser(ToyDenoiser):
    def __init__(self):
        super().__init__(timed=True)

    def forward(self, input_ids, timesteps):
        return MaskedLMOutput(logits=self.logits(input_ids, timesteps))


class UniformQueue:
    """Stands in for ``masking.uniform``: hands out prepared tensors in order, checking shape and dtype."""

    def __init__(self):
        self.items = []

    def __call__(self, shape, generator=None, dtype=torch.float64, device=None):
        expected = self.items.pop(0)
        assert tuple(expected.shape) == tuple(shape) and expected.dtype == dtype, (expected.shape, shape, dtype)
        return expected.clone()


@contextlib.contextmanager
def shared_uniforms():
    """Route hfgen's ``masking.uniform`` (and the first-hitting scheduler's import of it) to a queue."""
    import hfgen.pipelines.masked_diffusion.masking as masking
    import hfgen.pipelines.masked_diffusion.scheduling_first_hitting as fhs

    q, originals = UniformQueue(), (masking.uniform, fhs.uniform)
    masking.uniform = fhs.uniform = q
    try:
        yield q
    finally:
        masking.uniform, fhs.uniform = originals


@pytest.fixture
def queue():
    with shared_uniforms() as q:
        yield q


def pipeline(model, scheduler):
    pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=None, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ancestral_pair(queue, dtype, num_steps):
    """``(hfgen tokens, MDLM tokens)`` of one ancestral run from the same uniforms (``queue`` feeds hfgen)."""
    torch_dtype = getattr(torch, dtype)
    model = AgnosticDenoiser()
    noise, rows = mdlm.LogLinearNoise(eps=1e-3), 8
    grid = torch.linspace(1, 0, num_steps + 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)

    def forward(x, sigma):  # Diffusion.forward: backbone then SUBS; the model is time-agnostic
        return mdlm.subs_parameterization(model.logits(x).to(torch_dtype), x, MASK)

    x = torch.full((rows, L), MASK)
    with torch.no_grad():
        for i in range(num_steps):
            draws = []

            def rand_like(probs, draws=draws):
                u = torch.rand(probs.shape, generator=g, dtype=probs.dtype)
                draws.append(u)
                return u

            # MDLM's timesteps share the dtype of its probabilities (float32 there)
            t = grid[i].to(torch_dtype) * torch.ones(rows, 1, dtype=torch_dtype)
            dt = (grid[i] - grid[i + 1]).to(torch_dtype)
            x = mdlm.ddpm_update(x, t, dt, noise=noise, forward=forward, mask_index=MASK,
                                 rand_like=rand_like)
            (u,) = draws
            queue.items.append(torch.cat([u, u[..., MASK:MASK + 1]], dim=-1))  # class V = MDLM's mask column
    official = x

    scheduler = AncestralMaskedScheduler(masking_schedule="loglinear", schedule_eps=1e-3, sampling_dtype=dtype)
    out = pipeline(model, scheduler)(input_ids=torch.full((L,), MASK), num_samples=rows, mask_token_id=MASK,
                                     num_inference_steps=num_steps, use_cache=False, output_type="pt")
    assert not queue.items
    return out.sequences, official


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("num_steps", [5, 40])
def test_ancestral_step_matches_mdlm_ddpm_update(queue, dtype, num_steps):
    ours, official = ancestral_pair(queue, dtype, num_steps)
    assert (official != MASK).all()
    assert torch.equal(ours, official), f"{(ours != official).sum()} of {official.numel()} tokens differ"


def first_hitting_pair(queue, schedule, dtype, seed):
    """``(hfgen tokens, BD3-LM tokens, hfgen times, BD3-LM times)``: BD3-LM's FHS (batch 1, one block): same hitting times, same positions, same tokens.

    BD3-LM's ``t`` is the masking probability ``1 - alpha`` of its loglinear schedule, ``t = (1 - eps) t_hfgen``;
    both recursions start at ``1 - alpha(1)``, so ``t_bd3lm = (1 - alpha(t_hfgen))`` at every hit. The
    denoiser is time-conditioned, so a wrong time changes the tokens too. BD3-LM samples in float64; the
    float32 case feeds ``p_x0`` in float32 to the same ``_sample_categorical`` (MDLM's precision).
    """
    torch_dtype = getattr(torch, dtype)
    eps = 1e-3
    scale = 1.0 if schedule == "linear" else 1 - eps  # 1 - alpha(t) = scale * t
    model = TimedDenoiser()
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)

    x, t = torch.full((1, L), MASK), scale * 1.0
    times_u, times, keys_and_tokens = [], [], []
    with torch.no_grad():
        while (x == MASK).any():
            n = int((x == MASK).sum())

            def rand():
                times_u.append(rng.random())
                return times_u[-1]

            t = bd3lm.first_hitting_time(t, n, rand)
            times.append(t)
            t_model = torch.tensor([t / scale], dtype=torch.float64)  # the same network input time on both sides
            p_x0 = torch.softmax(model.logits(x, t_model).index_fill(-1, torch.tensor([MASK]), -torch.inf), -1)
            j = int(rng.integers(0, n))
            u = torch.rand((1, L, V), generator=g, dtype=torch_dtype)
            position = int((x[0] == MASK).nonzero()[j, 0])
            x = bd3lm.first_hitting_update(x, p_x0.to(torch_dtype), MASK, rand_like=lambda p, u=u: u,
                                           randint=lambda lo, hi, size, j=j: torch.tensor([j]))
            keys = torch.full((1, L), 0.5, dtype=torch.float64)
            keys[0, position] = 1.0
            keys_and_tokens += [keys, u[:, position:position + 1]]
    official = x

    queue.items += [torch.tensor([times_u], dtype=torch.float64), *keys_and_tokens]
    scheduler = FirstHittingScheduler(masking_schedule=schedule, schedule_eps=eps, sampling_dtype=dtype)
    out = pipeline(model, scheduler)(input_ids=torch.full((L,), MASK), mask_token_id=MASK, output_type="pt")
    assert not queue.items
    return out.sequences, official, (scale * scheduler.hit_times[0]).numpy(), np.array(times)


@pytest.mark.parametrize("schedule", ["linear", "loglinear"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", [0, 1])
def test_first_hitting_matches_bd3lm(queue, schedule, dtype, seed):
    ours, official, our_times, official_times = first_hitting_pair(queue, schedule, dtype, seed)
    np.testing.assert_allclose(our_times, official_times, rtol=1e-13, atol=0)
    assert torch.equal(ours, official), f"{(ours != official).sum()} of {L} tokens differ"


def test_sample_categorical_equals_mdlm_race(monkeypatch):
    """``masking.sample_categorical`` on the same uniforms as MDLM's ``_sample_categorical`` (both dtypes)."""
    from hfgen.pipelines.masked_diffusion import masking

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        probs = torch.softmax(3 * torch.randn(64, 50, generator=g, dtype=torch.float64), -1).to(dtype)
        probs[:, 7] = 0  # an impossible class
        u = torch.rand(probs.shape, generator=g, dtype=dtype)
        official = mdlm._sample_categorical(probs, rand_like=lambda p, u=u: u)
        monkeypatch.setattr(masking, "uniform", lambda shape, generator=None, dtype=None, device=None, u=u: u.clone())
        assert torch.equal(masking.sample_categorical(probs.log(), dtype=dtype), official)
