"""Record kuleshov-group/bd3lms's first-hitting sampler for hfgen's golden tests (``tests/golden/data/bd3lm/``).

    git clone https://github.com/kuleshov-group/bd3lms /tmp/bd3lms   # or any snapshot of it
    OMP_NUM_THREADS=1 python scripts/golden/record_bd3lm.py --checkout /tmp/bd3lms [--commit SHA]

What runs from the checkout, unchanged: ``diffusion.py``'s ``Diffusion._semi_ar_sampler`` with
``sampling.first_hitting=True`` (its time update ``t *= u ** (1 / num_masked)``), which calls
``_ddpm_caching_update`` (the ``first_hitting`` branch), ``_sample_prior``, ``_nucleus_sample`` (``nucleus_p=1``),
``_sigma_from_p``, ``forward``, ``_process_sigma``, ``_subs_parameterization`` and ``_sample_categorical``, with
``noise_schedule.LogLinearNoise`` (whose masking probability at time ``t`` is ``t``). The ``Diffusion`` is made
with ``__new__`` and holds only the attributes those methods read: one block (``block_size`` = the sequence,
one stride), batch size 1 (``_validate_configuration`` requires it for first hitting), no KV cache, float64, and
``tokenizer.bos_token_id`` set to the mask id so that the sampler's ``x_accum[:, 0] = bos`` keeps every position
masked (the comparison starts from an all-masked sequence).

The backbone is the time-conditioned toy of ``tests/golden/test_masked_diffusion.py`` (``TimedDenoiser``, seed 0);
BD3-LM hands it ``sigma = -log(1 - t)``, which it turns back into ``t = -expm1(-sigma)``, the time hfgen's
scheduler hands its model (so both schedules of hfgen meet the same recording).

Stand-ins (written here), for imports of ``diffusion.py`` used only in training and evaluation: ``hydra``,
``lightning`` (``LightningModule`` = ``torch.nn.Module``), and bd3lms's own ``dataloader``, ``metrics``, ``models``,
``utils`` modules (empty). The random draws (``np.random.rand``, ``torch.randint``, ``torch.rand_like``) are the
real ones, seeded, and recorded as they are drawn.
"""

import numpy as np
import torch
from _common import arguments, stand_in, write

args = arguments(__doc__.splitlines()[0], "kuleshov-group/bd3lms")
from tests.golden.test_masked_diffusion import MASK, TimedDenoiser  # noqa: E402

stand_in("hydra.utils")
stand_in("lightning", LightningModule=torch.nn.Module)
for name in ("dataloader", "metrics", "models", "utils"):
    stand_in(name)

import diffusion  # noqa: E402
import noise_schedule  # noqa: E402

L = 8


class Namespace:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def official(toy):
    model = diffusion.Diffusion.__new__(diffusion.Diffusion)
    torch.nn.Module.__init__(model)
    model.config = Namespace(
        algo=Namespace(name="bd3lm"), model=Namespace(length=L), loader=Namespace(eval_batch_size=1),
        sampling=Namespace(first_hitting=True, kv_cache=False, nucleus_p=1.0, var_length=False))
    model.backbone = lambda x, sigma, store_kv=False, sample_mode=False: toy.logits(x, -torch.expm1(-sigma))
    model.noise, model.block_size, model.mask_index, model.neg_infinity = noise_schedule.LogLinearNoise(), L, MASK, -1e6
    model.parameterization, model.time_conditioning, model.cross_attn = "subs", True, False
    model.tokenizer = Namespace(bos_token_id=MASK)
    model.device, model.dtype = torch.device("cpu"), torch.float64
    return model


class Recorder:
    """Wraps a random function (or method) so that every value it returns is kept."""

    def __init__(self, owner, name):
        self.owner, self.name, self.original, self.values = owner, name, getattr(owner, name), []

    def __call__(self, *a, **k):
        self.values.append(self.original(*a, **k))
        return self.values[-1]

    def __enter__(self):
        setattr(self.owner, self.name, self)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.original)


def run(seed):
    """One first-hitting run: the tokens, sampling steps, the times ``t`` handed to each update, and the draws."""
    toy = TimedDenoiser()
    model, times = official(toy), []
    step = model._ddpm_caching_update

    def update(x, t, dt, p_x0=None):
        times.append(t.reshape(()).clone())
        return step(x=x, t=t, dt=dt, p_x0=p_x0)

    model._ddpm_caching_update = update
    np.random.seed(seed)
    torch.manual_seed(seed)
    with (Recorder(np.random, "rand") as times_u, Recorder(torch, "randint") as picks,
          Recorder(torch, "rand_like") as token_u, torch.no_grad()):
        tokens, steps = model._semi_ar_sampler(n_samples=1, num_steps=2 * L, num_strides=1, seqlen=L, context_size=L)
    return toy, {"tokens": tokens, "hit_times": torch.stack(times),
                 "time_uniforms": torch.tensor(times_u.values, dtype=torch.float64),
                 "picks": torch.cat(picks.values), "token_uniforms": torch.cat(token_u.values), "steps": torch.tensor(steps)}


def main():
    tensors = {}
    for seed in (0, 1):
        toy, outputs = run(seed)
        tensors.update({f"seed{seed}.{k}": v for k, v in outputs.items()})
    tensors.update({f"denoiser.{k}": v for k, v in toy.state_dict().items()})
    write(args, "bd3lm", "first_hitting", tensors, file="diffusion.py, noise_schedule.py",
          function="Diffusion._semi_ar_sampler (sampling.first_hitting=True) with _ddpm_caching_update; LogLinearNoise",
          seeds={"np.random.seed and torch.manual_seed before each run": [0, 1],
                 "toy denoiser (tests/golden/test_masked_diffusion.py TimedDenoiser)": 0})


main()
