"""A time-conditioned MDLM DiT (SEDD-absorb) sampled and trained with each time input: it receives ``t`` as
``timesteps`` (and maps it to ``sigma`` itself) or ``sigma(t)`` as ``sigma``, never ``sigma`` mapped again."""

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from hfgen.pipelines import AncestralMaskedScheduler, MaskedDiffusionPipeline
from hfgen.pipelines.masked_diffusion.masking import alpha, total_noise
from hfgen.pipelines.masked_diffusion.modeling_mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM

V, L, MASK, STEPS = 3, 3, 3, 3  # content tokens 0..V-1, the mask is token V


def time_conditioned_dit(seed=0):
    """A tiny time-conditioned DiT with every weight random (the official init zeroes the adaLN, hiding the time)."""
    torch.manual_seed(seed)
    model = MDLMDiTForMaskedLM(MDLMDiTConfig(vocab_size=V + 1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             cond_dim=8, frequency_embedding_size=16, max_position_embeddings=8,
                                             time_conditioning=True, mask_token_id=MASK))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model.eval()


@torch.no_grad()
def ancestral_law(model, sigma_of_t):
    """Exact law of the T-step ancestral sampler from the all-masked sequence: a forward pass over the
    (V + 1)^L states; the denoiser is called directly with ``sigma=sigma_of_t(t)`` at each step's start time."""
    grid = torch.linspace(1, 0, STEPS + 1, dtype=torch.float64)
    a = alpha("loglinear", grid)
    law = {(MASK,) * L: 1.0}
    for i in range(STEPS):
        q = float((a[i + 1] - a[i]) / (1 - a[i]))  # P(a masked token unmasks in this step)
        states = list(law)
        logits = model(torch.tensor(states), sigma=sigma_of_t(grid[i]).float()).logits[..., :V]
        mu = torch.softmax(logits.double(), dim=-1).numpy()
        new = {}
        for state, mu_state in zip(states, mu):
            options = [[(MASK, 1 - q)] + [(v, q * mu_state[pos, v]) for v in range(V)] if token == MASK
                       else [(token, 1.0)] for pos, token in enumerate(state)]
            for choice in itertools.product(*options):
                nxt = tuple(token for token, _ in choice)
                new[nxt] = new.get(nxt, 0.0) + law[state] * np.prod([p for _, p in choice])
        law = new
    return np.array([law.get(x, 0.0) for x in itertools.product(range(V), repeat=L)])


def counts(sequences):
    index = {x: i for i, x in enumerate(itertools.product(range(V), repeat=L))}
    out = np.zeros(len(index))
    for row in sequences.tolist():
        out[index[tuple(row)]] += 1
    return out


@pytest.mark.parametrize("time_input", ["t", "sigma"])
def test_time_conditioned_dit_samples_the_exact_law_with_finite_logits(time_input):
    model = time_conditioned_dit()
    pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=None, scheduler=AncestralMaskedScheduler(masking_schedule="loglinear"))
    pipe.set_progress_bar_config(disable=True)
    finite = []

    def record(pipe, step, timestep, callback_kwargs):
        finite.append(bool(torch.isfinite(callback_kwargs["logits"]).all()))
        return {}

    out = pipe(input_ids=torch.full((L,), MASK), num_samples=30_000, mask_token_id=MASK, num_inference_steps=STEPS,
               time_input=time_input, output_type="pt", generator=torch.Generator().manual_seed(0),
               callback_on_step_end=record, callback_on_step_end_tensor_inputs=["logits"])
    assert finite and all(finite)
    observed = counts(out.sequences)
    exact = ancestral_law(model, lambda t: total_noise("loglinear", t))
    assert stats.chisquare(observed, exact * observed.sum()).pvalue > 1e-3
    time_agnostic = ancestral_law(model, lambda t: torch.zeros(()))  # negative control: the test has power
    assert stats.chisquare(observed, time_agnostic * observed.sum()).pvalue < 1e-3


def test_training_a_time_conditioned_dit_on_sigma_keeps_a_finite_loss(tmp_path):
    from hfgen.trainers import MaskedDiffusionConfig, MaskedDiffusionTrainer

    model = time_conditioned_dit().train()
    args = MaskedDiffusionConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, masking_schedule="loglinear",
                                 time_conditioning="sigma", mask_token_id=MASK, time_epsilon=0.999)  # t near 1
    trainer = MaskedDiffusionTrainer(model=model, args=args)
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs.get("sigma")), with_kwargs=True)
    x0 = torch.randint(0, V, (8, L), generator=torch.Generator().manual_seed(0))
    loss = trainer.compute_loss(model, {"input_ids": x0})
    assert torch.isfinite(loss)
    assert seen[0] is not None and float(seen[0].max()) == pytest.approx(-np.log(1e-3), rel=0.01)  # sigma(1) ~ 6.9
