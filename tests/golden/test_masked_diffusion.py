"""Golden tests: hfgen's masked-diffusion samplers against recorded outputs of the official MDLM and BD3-LM code.

The recordings (``tests/golden/data/mdlm/``, ``tests/golden/data/bd3lm/``, with their provenance) were made by
``scripts/golden/record_mdlm.py`` and ``scripts/golden/record_bd3lm.py``, which run the official functions from a
checkout of kuleshov-group/mdlm and kuleshov-group/bd3lms on the toy denoisers defined here (their weights are
recorded too). hfgen's public path (``MaskedDiffusionPipeline`` with ``AncestralMaskedScheduler`` or
``FirstHittingScheduler``) gets the same uniforms; the tokens must be identical, in float64 and in float32
sampling, and the first-hitting times equal to float64 rounding.

How the uniforms are shared: hfgen draws every random number through ``masking.uniform``; the tests
replace it by a queue holding, in hfgen's order, the official draws mapped to hfgen's layout:
- ancestral step: MDLM (``Diffusion._ddpm_update``) races ``V`` classes with the mask class at ``mask_index``
  standing for "stay masked"; hfgen races ``V + 1`` classes (the mask class impossible, class ``V`` = "stay"),
  so hfgen's uniforms are MDLM's plus MDLM's mask-column uniform appended as class ``V``. MDLM's uniforms came
  from a seeded ``torch.Generator`` (regenerated here and checked against their recorded sums);
- first hitting: BD3-LM (``Diffusion._semi_ar_sampler``) picks the ``randint(0, n)``-th masked position; hfgen
  picks the masked position with the largest key, so the keys are 1 at BD3-LM's position and 0.5 at the others;
  the token uniforms are BD3-LM's recorded row at that position.

The grid: MDLM's ``_ddpm_update(x, t, dt)`` was called on hfgen's grid ``linspace(1, 0, T + 1)``. MDLM's own
``_sample`` ends at ``t = 1e-5`` and then takes an argmax ("noise removal"); hfgen's last step ends at
``t = 0`` and samples. That loop-level choice is not pinned here (it is documented in the scheduler).

First hitting, times: BD3-LM's sampler starts at ``t = 1`` and its ``LogLinearNoise`` masks with probability
``t`` (``compute_loss_scaling_and_move_chance`` returns ``t``), whatever hfgen's schedule; hfgen's hitting times
follow the same recursion in its own time, and its model gets that time, so both of hfgen's schedules
(``linear``, ``loglinear``) meet the one recording. BD3-LM samples in float64; hfgen's float32 sampling gets
the recorded uniforms rounded to float32.

Broken-variant checks (run once, then restored):
- ancestral: the "stay masked" mass taken as ``(1 - alpha_t)/(1 - alpha_t)`` instead of
  ``(1 - alpha_s)/(1 - alpha_t)`` in ``AncestralMaskedScheduler.step``: all 4 cases fail,
  13, 15, 4 and 7 of 64 tokens differ.
- first hitting: ``u ** (1 / (n + 1))`` instead of ``u ** (1 / n)`` in ``FirstHittingScheduler.set_timesteps``:
  all 8 cases fail, the hitting times differ by up to 0.11 (seed 0) and 0.050 (seed 1).
"""

import contextlib

import pytest
import torch
from transformers.modeling_outputs import MaskedLMOutput

from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline

from .recorded import load_recording

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


def recorded_denoiser(model, recording):
    model.load_state_dict({k.removeprefix("denoiser."): v for k, v in recording.items() if k.startswith("denoiser.")})
    return model


def ancestral_pair(queue, dtype, num_steps):
    """``(hfgen tokens, MDLM tokens)``: hfgen's ancestral run on the uniforms of the recorded ``_ddpm_update`` run."""
    recording, _ = load_recording("mdlm", "ddpm_update")
    official = recording[f"{dtype}.steps{num_steps}.tokens"]
    rows, torch_dtype, g = official.shape[0], getattr(torch, dtype), torch.Generator().manual_seed(0)
    uniforms = [torch.rand((rows, L, V), generator=g, dtype=torch_dtype) for _ in range(num_steps)]
    sums = torch.stack([u.double().sum() for u in uniforms])
    torch.testing.assert_close(sums, recording[f"{dtype}.steps{num_steps}.uniform_sums"], rtol=0, atol=0)
    queue.items += [torch.cat([u, u[..., MASK:MASK + 1]], dim=-1) for u in uniforms]  # class V = MDLM's mask column

    model = recorded_denoiser(AgnosticDenoiser(), recording)
    scheduler = AncestralMaskedScheduler(masking_schedule="loglinear", schedule_eps=1e-3, sampling_dtype=dtype)
    ours = pipeline(model, scheduler)(input_ids=torch.full((L,), MASK), num_samples=rows, mask_token_id=MASK,
                                      num_inference_steps=num_steps, use_cache=False, output_type="pt").sequences
    assert not queue.items
    return ours, official


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("num_steps", [5, 40])
def test_ancestral_step_matches_mdlm_ddpm_update(queue, dtype, num_steps):
    ours, official = ancestral_pair(queue, dtype, num_steps)
    assert (official != MASK).all()
    assert torch.equal(ours, official), f"{(ours != official).sum()} of {official.numel()} tokens differ"


def first_hitting_pair(queue, schedule, dtype, seed):
    """``(hfgen tokens, BD3-LM tokens, hfgen times, BD3-LM times)``: hfgen's first-hitting run on the draws of the
    recorded ``_semi_ar_sampler`` run (batch 1, one block)."""
    recording, _ = load_recording("bd3lm", "first_hitting")
    torch_dtype = getattr(torch, dtype)
    queue.items.append(recording[f"seed{seed}.time_uniforms"][None])
    filled = torch.zeros(L, dtype=torch.bool)
    for pick, u in zip(recording[f"seed{seed}.picks"].tolist(), recording[f"seed{seed}.token_uniforms"]):
        position = int((~filled).nonzero()[pick, 0])  # BD3-LM's randint(0, n)-th masked position
        filled[position] = True
        keys = torch.full((1, L), 0.5, dtype=torch.float64)
        keys[0, position] = 1.0
        queue.items += [keys, u[None, position:position + 1].to(torch_dtype)]

    model = recorded_denoiser(TimedDenoiser(), recording)
    scheduler = FirstHittingScheduler(masking_schedule=schedule, schedule_eps=1e-3, sampling_dtype=dtype)
    ours = pipeline(model, scheduler)(input_ids=torch.full((L,), MASK), mask_token_id=MASK, output_type="pt").sequences
    assert not queue.items
    return ours, recording[f"seed{seed}.tokens"], scheduler.hit_times[0], recording[f"seed{seed}.hit_times"]


@pytest.mark.parametrize("schedule", ["linear", "loglinear"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", [0, 1])
def test_first_hitting_matches_bd3lm(queue, schedule, dtype, seed):
    ours, official, our_times, official_times = first_hitting_pair(queue, schedule, dtype, seed)
    torch.testing.assert_close(our_times, official_times, rtol=1e-13, atol=0)
    assert torch.equal(ours, official), f"{(ours != official).sum()} of {L} tokens differ"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sample_categorical_equals_mdlm_race(monkeypatch, dtype):
    """``masking.sample_categorical`` on the uniforms MDLM's ``_sample_categorical`` drew (an impossible class included)."""
    from hfgen.pipelines.masked_diffusion import masking

    recording, _ = load_recording("mdlm", "sample_categorical")
    probs, u = recording[f"{dtype}.probs"], recording[f"{dtype}.uniforms"]
    monkeypatch.setattr(masking, "uniform", lambda shape, generator=None, dtype=None, device=None: u.clone())
    assert torch.equal(masking.sample_categorical(probs.log(), dtype=getattr(torch, dtype)), recording[f"{dtype}.samples"])
