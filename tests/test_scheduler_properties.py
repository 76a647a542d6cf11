"""Property-based tests (hypothesis) of the schedulers' invariants, for any valid configuration:
monotone timesteps and sigmas, the boundary times, ``step`` preserving shape / dtype and finiteness,
and the step count each plan promises."""

from __future__ import annotations

import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
import tempfile  # noqa: E402

from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402

set_hypothesis_home_dir(tempfile.mkdtemp(prefix="hfgen-hypothesis-"))  # no .hypothesis/ folder in the repository
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hfgen.pipelines import (  # noqa: E402
    AncestralMaskedScheduler,
    BridgeScheduler,
    ConsistencyTrajectoryScheduler,
    FirstHittingScheduler,
)

FAST = settings(max_examples=40, deadline=None, database=None, derandomize=True)  # reproducible in CI
steps = st.integers(min_value=1, max_value=60)
schedules = st.sampled_from(["linear", "cosine", "loglinear"])


def decreasing(x: torch.Tensor, strict: bool = True) -> bool:
    d = x[1:] - x[:-1]
    return bool((d < 0).all() if strict else (d <= 0).all())


# ------------------------------------------------------------------------------------- first hitting


@FAST
@given(schedule=schedules, counts=st.lists(st.integers(0, 12), min_size=1, max_size=4).filter(lambda c: max(c) > 0),
       num_steps=st.one_of(st.none(), steps), k=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_first_hitting_times_decrease_inside_0_1_and_unmask_every_token_once(schedule, counts, num_steps, k, seed):
    s = FirstHittingScheduler(masking_schedule=schedule, tokens_per_step=k)
    n = torch.tensor(counts)
    s.set_timesteps(num_steps, num_masked=n, generator=torch.Generator().manual_seed(seed))
    hits = s.hit_times
    assert ((hits >= 0) & (hits <= 1)).all()
    for row, m in zip(hits, counts):  # the n first-hitting times of a row: strictly decreasing, then padding
        assert decreasing(row[:m], strict=False) and (row[:m] > 0).all() and (row[m:] == 0).all()
    assert torch.equal(s.unmask_counts.sum(0), n)  # every masked token unmasked exactly once
    assert s.timesteps.shape == (s.num_inference_steps, len(counts))
    if num_steps is not None:
        assert s.num_inference_steps <= num_steps  # never more network calls than asked for


@FAST
@given(schedule=schedules, length=st.integers(1, 10), batch=st.integers(1, 3), vocab=st.integers(2, 7),
       seed=st.integers(0, 2**31 - 1))
def test_first_hitting_sampler_fills_every_mask_and_keeps_shape_and_prompt(schedule, length, batch, vocab, seed):
    mask = vocab
    g = torch.Generator().manual_seed(seed)
    sample = torch.randint(0, vocab, (batch, length), generator=g)
    masked = torch.rand(batch, length, generator=g) < 0.7
    sample[masked] = mask
    prompt = sample.clone()
    s = FirstHittingScheduler(masking_schedule=schedule)
    s.set_timesteps(num_masked=(sample == mask).sum(1), generator=g)
    for t in s.timesteps:
        logits = torch.randn(batch, length, vocab + 1, generator=g)
        out = s.step(logits, t, sample, mask, generator=g).prev_sample
        assert out.shape == sample.shape and out.dtype == sample.dtype
        assert ((sample == mask).sum(1) - (out == mask).sum(1) >= 0).all()  # masks only ever disappear
        sample = out
    assert not (sample == mask).any() and ((sample < vocab) & (sample >= 0)).all()
    assert torch.equal(sample[~masked], prompt[~masked])  # visible tokens are never changed


# ---------------------------------------------------------------------------------------- ancestral


@FAST
@given(schedule=schedules, num_steps=steps, seed=st.integers(0, 2**31 - 1))
def test_ancestral_grid_runs_from_1_to_0_and_the_last_step_unmasks_everything(schedule, num_steps, seed):
    s = AncestralMaskedScheduler(masking_schedule=schedule)
    s.set_timesteps(num_steps)
    assert len(s.timesteps) == num_steps and s.timesteps[0] == 1 and decreasing(s.timesteps)
    assert s._grid[-1] == 0
    g = torch.Generator().manual_seed(seed)
    vocab, mask = 5, 5
    sample = torch.full((2, 6), mask)
    for t in s.timesteps:
        out = s.step(torch.randn(2, 6, vocab + 1, generator=g), t, sample, mask, generator=g).prev_sample
        assert out.shape == sample.shape and torch.equal(out[sample != mask], sample[sample != mask])
        sample = out
    assert not (sample == mask).any()  # alpha(0) = 1: nothing stays masked


# ------------------------------------------------------------------------------------------ bridges


bridge_configs = st.fixed_dictionaries({
    "noise_schedule": st.sampled_from(["vp", "ve"]), "solver": st.sampled_from(["dbim", "consistency", "heun"]),
    "eta": st.floats(0, 1), "t_min": st.sampled_from([1e-4, 1e-3, 2e-3]), "gamma": st.sampled_from([1e-3, 1e-2]),
})


@FAST
@given(config=bridge_configs, num_steps=st.integers(1, 12))
def test_bridge_plan_starts_at_T_ends_at_t_min_and_decreases(config, num_steps):
    s = BridgeScheduler(**config)
    s.set_timesteps(num_steps)
    t = s.timesteps
    assert t.dtype == torch.float64 and (t > 0).all() and (t <= s.T).all()
    if config["solver"] == "heun":
        assert len(t) == 3 * num_steps - 1 and decreasing(t, strict=False)
        assert s._targets[-1] == 0 and math.isclose(t[0].item(), s.T - 1e-4, rel_tol=1e-9)
        if num_steps > 1:  # the Karras grid reaches t_min (the last step then churns below it on its way to 0)
            assert any(math.isclose(v, s.config.t_min, rel_tol=1e-9) for v in t.tolist())
            assert min(t).item() >= (1 - s.config.churn_step_ratio) * s.config.t_min * (1 - 1e-9)
    else:
        assert len(t) == num_steps == s.nfe and decreasing(t) and t[0] == s.T
        assert math.isclose(s._targets[-1], s.config.t_min, rel_tol=1e-12)
        if num_steps > 1:
            assert math.isclose(t[1].item(), s.T - s.config.gamma, rel_tol=1e-12)


@FAST
@given(config=bridge_configs, num_steps=st.integers(1, 5), batch=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_bridge_steps_keep_shape_dtype_and_finiteness_and_respect_the_plan(config, num_steps, batch, seed):
    s = BridgeScheduler(**config)
    s.set_timesteps(num_steps)
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(batch, 1, 4, 4, generator=g) * 2 - 1
    x = y.clone()
    for t in s.timesteps:
        out = s.step(torch.randn(x.shape, generator=g), t, x, y, generator=g)
        for v in (out.prev_sample, out.pred_original_sample):
            assert v.shape == x.shape and v.dtype == x.dtype and torch.isfinite(v).all()
        assert out.pred_original_sample.abs().max() <= 1  # clip_denoised
        x = out.prev_sample
    with pytest.raises(ValueError, match="All planned steps"):
        s.step(torch.zeros_like(x), s.timesteps[-1], x, y)


@FAST
@given(t_min=st.sampled_from([1e-4, 1e-3]), t=st.floats(2e-3, 0.99), noise_schedule=st.sampled_from(["vp", "ve"]))
def test_consistency_function_is_the_identity_at_t_min_and_scalings_are_finite(t_min, t, noise_schedule):
    s = BridgeScheduler(noise_schedule=noise_schedule, t_min=t_min, solver="consistency")
    c_skip, c_out, _ = s.scalings(torch.tensor([t_min], dtype=torch.float64))
    assert torch.allclose(c_skip, torch.ones(1, dtype=torch.float64)) and torch.allclose(c_out, torch.zeros(1, dtype=torch.float64))
    t = t * s.T
    assert all(torch.isfinite(v).all() for v in s.scalings(torch.tensor([t], dtype=torch.float64)))


# ------------------------------------------------------------------------------- consistency trajectory


ct_configs = st.fixed_dictionaries({
    "sigma_min": st.sampled_from([0.002, 0.01]), "sigma_max": st.sampled_from([1.0, 80.0]), "rho": st.floats(1.0, 10.0),
    "gamma": st.floats(0.0, 1.0), "preconditioning": st.sampled_from(["euler", "variance"]),
})


@FAST
@given(config=ct_configs, num_steps=steps)
def test_trajectory_sigmas_run_from_sigma_max_to_sigma_min_and_targets_never_pass_the_next_time(config, num_steps):
    s = ConsistencyTrajectoryScheduler(**config)
    s.set_timesteps(num_steps)
    sig = s.sigmas
    assert len(sig) == num_steps + 1 and len(s.timesteps) == len(s.targets) == num_steps
    assert math.isclose(sig[0].item(), config["sigma_max"], rel_tol=1e-9)
    assert math.isclose(sig[-1].item(), config["sigma_min"], rel_tol=1e-9)
    assert decreasing(sig)
    # the Karras grid reaches sigma_min up to rounding (rho = 1: ~1e-11 relative); targets are clamped to it
    assert (s.targets <= sig[1:] * (1 + 1e-9)).all() and (s.targets >= config["sigma_min"]).all()
    assert s.targets[-1] == config["sigma_min"]


@FAST
@given(config=ct_configs, num_steps=st.integers(1, 6), batch=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_trajectory_steps_keep_shape_and_dtype_and_G_of_t_t_is_the_identity(config, num_steps, batch, seed):
    s = ConsistencyTrajectoryScheduler(**config)
    s.set_timesteps(num_steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, generator=g) * config["sigma_max"]
    for t in s.timesteps:
        out = s.step(torch.randn(x.shape, generator=g), t, x, generator=g)
        assert out.prev_sample.shape == x.shape and out.prev_sample.dtype == x.dtype
        assert torch.isfinite(out.prev_sample).all()
        x = out.prev_sample
    t = s.sigmas[0]
    same = s.precondition_outputs(x, torch.randn(x.shape, generator=g), t, t)  # f(t, t) = 1, g(t, t) = 0
    torch.testing.assert_close(same, x)
