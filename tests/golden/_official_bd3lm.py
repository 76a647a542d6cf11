"""Transcription of BD3-LM's first-hitting sampler, for the golden tests (test fixture, not library code).

Source: kuleshov-group/bd3lms @ 1c3e8f43d88dfbcee5ff2aa6932a9e74b31ae1d7, ``diffusion.py``:
- ``_sample_categorical`` (L21-24);
- the ``first_hitting`` branch of ``Diffusion._ddpm_caching_update`` (L580-587): sample ``x0`` for every
  position, then write it at ONE masked position chosen by ``torch.randint(0, num_masked)``;
- the time update of ``Diffusion._semi_ar_sampler`` (L1026-1029): ``u = np.random.rand()``,
  ``t *= u**(1 / num_masked)`` ("faster (equivalent) sampler from zheng et al").

Only one block (``block_size`` = the sequence) and batch size 1 (``_validate_configuration`` requires it
for first hitting). ``p_x0`` is the model's probability (``forward(...).to(torch.float64).exp()`` in the
source; nucleus sampling at ``p = 1`` is the identity). ``rand_like``/``randint``/``rand`` are arguments so a
test can feed the same randomness to both sides; the arithmetic is unchanged.
"""

import numpy as np
import torch


def _sample_categorical(categorical_probs, rand_like=torch.rand_like):
    gumbel_norm = (1e-10 - (rand_like(categorical_probs) + 1e-10).log())
    samples = (categorical_probs / gumbel_norm).argmax(dim=-1)
    return samples


def first_hitting_time(t, num_masked, rand=np.random.rand):
    """One step of the time recursion of ``_semi_ar_sampler``."""
    u = rand()
    t *= u**(1 / num_masked)
    return t


def first_hitting_update(x, p_x0, mask_index, rand_like=torch.rand_like, randint=torch.randint):
    """The ``first_hitting`` branch of ``_ddpm_caching_update`` (``x`` is the block, ``[1, block_size]``)."""
    block_size = x.shape[-1]
    x_block = _sample_categorical(p_x0, rand_like)
    # randomly and uniformly select an index in the block (among masked tokens)
    num_masked = (x[:, -block_size:] == mask_index).sum(-1)
    ind = randint(0, num_masked, (x_block.shape[0],))
    ind = (x[:, -block_size:] == mask_index).nonzero()[ind, 1]
    mask = (torch.arange(block_size, device=x.device) == ind[:, None]).to(x_block.dtype)
    x_block = x_block * mask + x[:, -block_size:] * (1 - mask)
    copy_flag = (x[:, -block_size:] != mask_index).to(x.dtype)
    x_block = copy_flag * x[:, -block_size:] + (1 - copy_flag) * x_block
    return x_block
