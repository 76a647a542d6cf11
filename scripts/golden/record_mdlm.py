"""Record kuleshov-group/mdlm's outputs for hfgen's golden tests (``tests/golden/data/mdlm/``).

    git clone https://github.com/kuleshov-group/mdlm /tmp/mdlm   # or any snapshot of it
    OMP_NUM_THREADS=1 python scripts/golden/record_mdlm.py --checkout /tmp/mdlm [--commit SHA]

What runs from the checkout, unchanged:
- ``diffusion.py``: ``_sample_categorical``; ``Diffusion._ddpm_update``, ``Diffusion.forward``,
  ``Diffusion._process_sigma``, ``Diffusion._subs_parameterization``, ``Diffusion._sedd_parameterization``
  (called on a ``Diffusion`` made with ``__new__`` that holds only the attributes these methods read:
  ``backbone``, ``noise``, ``mask_index``, ``neg_infinity``, ``parameterization``, ``time_conditioning``);
- ``noise_schedule.py``: ``LogLinearNoise``;
- ``models/dit.py``: ``DIT`` (a tiny config, random weights everywhere).

Stand-ins (written here), each for a dependency these functions do not use or that needs a GPU:
- ``hydra``, ``torchmetrics``, ``lightning``, and mdlm's own ``dataloader``, ``models``, ``utils`` modules, imported at
  the top of ``diffusion.py`` for training and evaluation: empty modules, except ``lightning.LightningModule``
  (``torch.nn.Module``) and ``torchmetrics.aggregation.MeanMetric`` (a plain class), the base classes it names;
- ``flash_attn`` (CUDA only), two functions ``DDiTBlock.forward`` calls, written from flash-attn's documented
  semantics: ``layers.rotary.apply_rotary_emb_qkv_(qkv, cos, sin)`` rotates q and k in place, non-interleaved
  (``x1 cos - x2 sin, x2 cos + x1 sin`` on the two halves of the head dimension), v untouched;
  ``flash_attn_interface.flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p, causal)`` is
  softmax attention with scale ``1/sqrt(head_dim)`` within each ``cu_seqlens`` segment.
- The random source: ``_sample_categorical`` draws ``torch.rand_like``; during the recording that name draws from
  a ``torch.Generator`` seeded as the provenance says, in the same shape and dtype, so that the test regenerates
  the identical uniforms (their per-step sums are recorded to check that).

The CUDA autocast contexts of ``Diffusion.forward`` and ``DIT.forward`` are inactive on CPU, so the DiT runs in
float32 (on a GPU its blocks run in bfloat16).
"""

import importlib.util

import torch
import torch.nn.functional as F
from _common import arguments, stand_in, write

args = arguments(__doc__.splitlines()[0], "kuleshov-group/mdlm")
from tests.golden.test_masked_diffusion import MASK, AgnosticDenoiser  # noqa: E402

stand_in("hydra.utils")
stand_in("lightning", LightningModule=torch.nn.Module)
stand_in("torchmetrics.aggregation", MeanMetric=type("MeanMetric", (), {}))
for name in ("dataloader", "models", "utils"):
    stand_in(name)


def apply_rotary_emb_qkv_(qkv, cos, sin):
    half = cos.shape[-1]
    cos, sin = cos[None, :, None, None, :], sin[None, :, None, None, :]
    qk = qkv[:, :, :2]
    x1, x2 = qk[..., :half].clone(), qk[..., half:2 * half].clone()
    qk[..., :half] = x1 * cos - x2 * sin
    qk[..., half:2 * half] = x2 * cos + x1 * sin
    return qkv


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, causal=False):
    assert dropout_p == 0.0 and not causal
    out = []
    for start, end in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
        q, k, v = (qkv[start:end, i].transpose(0, 1) for i in range(3))  # heads, length, head_dim
        out.append(F.scaled_dot_product_attention(q, k, v).transpose(0, 1))
    return torch.cat(out)


stand_in("flash_attn.layers.rotary", apply_rotary_emb_qkv_=apply_rotary_emb_qkv_)
stand_in("flash_attn.flash_attn_interface", flash_attn_varlen_qkvpacked_func=flash_attn_varlen_qkvpacked_func)

import diffusion  # noqa: E402
import noise_schedule  # noqa: E402

# models/dit.py alone: the package's __init__ also imports the Mamba backbone (CUDA kernels), unused here
dit_spec = importlib.util.spec_from_file_location("mdlm_dit", args.checkout / "models" / "dit.py")
official_dit = importlib.util.module_from_spec(dit_spec)
dit_spec.loader.exec_module(official_dit)


def official(parameterization="subs", time_conditioning=False, backbone=None):
    model = diffusion.Diffusion.__new__(diffusion.Diffusion)
    torch.nn.Module.__init__(model)
    model.backbone, model.noise = backbone, noise_schedule.LogLinearNoise(eps=1e-3)
    model.mask_index, model.neg_infinity = MASK, -1000000.0
    model.parameterization, model.time_conditioning = parameterization, time_conditioning
    return model


class SeededRandLike:
    """``torch.rand_like`` drawing from a seeded generator; keeps the sum of each draw."""

    def __init__(self, seed):
        self.generator, self.sums = torch.Generator().manual_seed(seed), []

    def __call__(self, like):
        u = torch.rand(like.shape, generator=self.generator, dtype=like.dtype)
        self.sums.append(u.double().sum())
        return u


def with_rand_like(rand_like, fn, *a):
    original = torch.rand_like
    torch.rand_like = rand_like
    try:
        return fn(*a)
    finally:
        torch.rand_like = original


def record_sample_categorical():
    g, tensors = torch.Generator().manual_seed(0), {}
    for dtype in (torch.float64, torch.float32):
        probs = torch.softmax(3 * torch.randn(64, 50, generator=g, dtype=torch.float64), -1).to(dtype)
        probs[:, 7] = 0  # an impossible class
        u = torch.rand(probs.shape, generator=g, dtype=dtype)
        name = str(dtype).removeprefix("torch.")
        tensors[f"{name}.probs"], tensors[f"{name}.uniforms"] = probs, u
        tensors[f"{name}.samples"] = with_rand_like(lambda p, u=u: u.clone(), diffusion._sample_categorical, probs)
    write(args, "mdlm", "sample_categorical", tensors, file="diffusion.py", function="_sample_categorical",
          seeds={"torch.Generator": 0, "order": "per dtype (float64, float32): randn(64, 50) logits, then rand uniforms"})


def record_ancestral():
    """``_ddpm_update`` on hfgen's grid ``linspace(1, 0, T + 1)``, 8 rows of 8 masked tokens, a time-agnostic toy."""
    toy, rows, tensors = AgnosticDenoiser(), 8, {}
    tensors.update({f"denoiser.{k}": v for k, v in toy.state_dict().items()})
    for dtype in (torch.float64, torch.float32):
        for num_steps in (5, 40):
            model = official(backbone=lambda x, sigma, dtype=dtype: toy.logits(x).to(dtype))
            grid = torch.linspace(1, 0, num_steps + 1, dtype=torch.float64)
            rand_like, x = SeededRandLike(0), torch.full((rows, 8), MASK)
            with torch.no_grad():
                for i in range(num_steps):
                    t = grid[i].to(dtype) * torch.ones(rows, 1, dtype=dtype)  # MDLM's times share its probabilities' dtype
                    dt = (grid[i] - grid[i + 1]).to(dtype)
                    x = with_rand_like(rand_like, model._ddpm_update, x, t, dt)
            key = f"{str(dtype).removeprefix('torch.')}.steps{num_steps}"
            tensors[f"{key}.tokens"], tensors[f"{key}.uniform_sums"] = x, torch.stack(rand_like.sums)
    write(args, "mdlm", "ddpm_update", tensors, file="diffusion.py, noise_schedule.py",
          function="Diffusion._ddpm_update (with Diffusion.forward, _subs_parameterization, LogLinearNoise(eps=1e-3))",
          seeds={"toy denoiser (tests/golden/test_masked_diffusion.py ToyDenoiser)": 0,
                 "torch.Generator for the uniforms of each run": 0})


VOCAB, HIDDEN, COND, BLOCKS, HEADS = 37, 32, 16, 2, 4


def dit(seed=0):
    torch.manual_seed(seed)
    config = {"model": {"hidden_size": HIDDEN, "cond_dim": COND, "n_blocks": BLOCKS, "n_heads": HEADS, "dropout": 0.1,
                        "scale_by_sigma": True}}
    model = official_dit.DIT(config, vocab_size=VOCAB)
    with torch.no_grad():
        for name, p in model.named_parameters():  # random everywhere, including the zero-initialised layers
            p.copy_(torch.randn_like(p) * (0.15 if "norm" not in name else 0.2) + (1.0 if "norm" in name else 0.0))
    return model.eval()


def dit_inputs(seed, batch=3, length=11):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, length), generator=g)
    ids[:, ::3] = VOCAB - 1  # some masked positions
    return ids, torch.rand(batch, generator=g) * 3


def record_dit():
    network = dit()
    # numbered, so that the test can rebuild the state-dict order (the order of an EMA's shadow parameters)
    tensors = {f"weights.{i:03d}.{k}": v for i, (k, v) in enumerate(network.state_dict().items())}
    with torch.no_grad():
        sedd, mdlm = official("sedd", True, network), official("subs", False, network)
        sedd.mask_index = mdlm.mask_index = VOCAB - 1
        ids, sigma = dit_inputs(1)
        t = torch.tensor([0.1, 0.5, 0.999])
        logits = network(ids, sedd._process_sigma(sigma))
        tensors.update({"sedd.input_ids": ids, "sedd.sigma": sigma, "sedd.logits": logits,
                        "sedd.log_score": sedd._sedd_parameterization(logits.clone(), ids, sigma),
                        "sedd.timesteps": t, "sedd.logits_at_timesteps": network(ids, sedd.noise.total_noise(t))})
        ids, sigma = dit_inputs(2)
        tensors.update({"mdlm.input_ids": ids, "mdlm.sigma": sigma, "mdlm.logits": network(ids, mdlm._process_sigma(sigma))})
    write(args, "mdlm", "dit", tensors, file="models/dit.py, diffusion.py, noise_schedule.py",
          function="DIT.forward (hidden 32, cond 16, 2 blocks, 4 heads, vocabulary 37); Diffusion._process_sigma, "
                   "Diffusion._sedd_parameterization; LogLinearNoise(eps=1e-3).total_noise",
          seeds={"torch.manual_seed before DIT() and the random weights": 0,
                 "torch.Generator of the sedd inputs": 1, "torch.Generator of the mdlm inputs": 2},
          extra_versions=("einops", "omegaconf"))


record_sample_categorical()
record_ancestral()
record_dit()
