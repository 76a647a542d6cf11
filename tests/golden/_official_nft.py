"""Transcription of the official NFT policy loss, for golden tests only (not library code).

Source: NVlabs/NFT @ b358faeb691391b500bfdabe667f9450aab6e70f, ``dp_actor.py``:
``clamp_preserve_grad`` and the NFT branch (``neg_weight >= 0``) of ``DataParallelPPOActor.update_policy``,
from ``negative_approx_kl = log_prob - old_log_prob`` to the reduction of ``pg_loss``. Kept line for line
(names included); the verl plumbing, asserts, prints and the DAPO branch are left out. ``correct_rate`` is
(bsz, response_length), the per-question correct rate broadcast over tokens, as ``ray_nft_trainer.py`` builds it;
``correct_mask`` is (bsz,) in {0, 1}. ``normalize``: 0 = omega 1, 1 = 1 - r_q, 2 = sqrt((1 - r_q) / r_q).

Finding: in the official ``ratio_type == "sequence"`` branch, ``negative_rate = 1 - correct_rate`` is taken
*before* ``correct_rate = correct_rate[:, 0]``, so it stays (bsz, response_length) while ``pg_losses`` is (bsz,):
with ``normalize`` 1 (the default) or 2 the product raises a shape error (or, when bsz == response_length,
broadcasts to a wrong (bsz, bsz) loss). Only ``normalize=0`` runs as written. ``per_answer_negative_rate=True``
adds the one evident fix, ``negative_rate = negative_rate[:, 0]`` (marked below; it is NOT in the official code).
"""

import torch


def clamp_preserve_grad(x, min_val=None, max_val=None):
    clipped = torch.clamp(x, min=min_val, max=max_val)
    return x + (clipped - x).detach()


def official_nft_pg_loss(log_prob, old_log_prob, response_mask, correct_rate, correct_mask, *, ratio_type="token",
                         neg_weight=1.0, clamp_negative=1.0, clamp_positive=0.0, normalize=1,
                         per_answer_negative_rate=False):
    negative_approx_kl = log_prob - old_log_prob
    if ratio_type == "token":
        ratio = torch.exp((negative_approx_kl).clamp(max=10.0))  # (bsz, response_length)
    elif ratio_type == "sequence":
        ratio = torch.exp(((negative_approx_kl) * response_mask).sum(dim=-1).clamp(max=10.0))[:, None]
    else:
        raise NotImplementedError
    correct_rate = torch.clamp(correct_rate, min=0.02, max=0.98)
    negative_rate = 1.0 - correct_rate
    if ratio_type == "token":
        proxy = 1.0 - correct_rate * ratio
        norm = 1.0 - correct_rate * 1.0
        proxy = proxy / norm
        negative_loss = -torch.log(clamp_preserve_grad(proxy, min_val=abs(clamp_negative)))
        positive_loss = -torch.log(clamp_preserve_grad(ratio, min_val=clamp_positive))
        pg_losses = negative_loss * (1.0 - correct_mask[:, None]) * neg_weight + correct_mask[:, None] * positive_loss
        if normalize == 1:
            pg_losses = pg_losses * negative_rate
        elif normalize == 2:
            pg_losses = pg_losses * (negative_rate / correct_rate) ** 0.5
        else:
            pg_losses = pg_losses
    elif ratio_type == "sequence":
        ratio = ratio.squeeze(-1)
        correct_rate = correct_rate[:, 0]
        if per_answer_negative_rate:  # NOT official: the fix described in the module docstring
            negative_rate = negative_rate[:, 0]
        proxy = 1.0 - correct_rate * ratio
        norm = 1.0 - correct_rate * 1.0
        proxy = proxy / norm
        negative_loss = -torch.log(clamp_preserve_grad(proxy, min_val=abs(clamp_negative)))
        positive_loss = -torch.log(clamp_preserve_grad(ratio, min_val=clamp_positive))
        pg_losses = negative_loss * (1.0 - correct_mask) * neg_weight + correct_mask * positive_loss
        if normalize == 1:
            pg_losses = pg_losses * negative_rate  # new update on 0414
        elif normalize == 2:
            pg_losses = pg_losses * (negative_rate / correct_rate) ** 0.5
        else:
            pg_losses = pg_losses
    # reduction
    if ratio_type == "token":
        pg_loss = torch.sum(pg_losses * response_mask, dim=1) / 1000.0
        pg_loss = torch.sum(pg_loss)
    elif ratio_type == "sequence":
        pg_loss = torch.sum(pg_losses)
    return pg_loss
