"""The official IISAN in-batch loss, transcribed for comparison only (test fixture, not library code).

Source: https://github.com/GAIR-Lab/IISAN, commit 67f5c1faf12a1f9fc3258922bb05684561532d1d,
``Code_Cached/model/model.py``, ``Model.forward`` (section "IN-BATCH CROSS-ENTROPY LOSS"): one
candidate per batch slot (``score_embs`` of all ``bs * (max_seq_len + 1)`` items), ``- log p``
debiasing per slot, padding slots and every slot holding an item of the user's own sequence masked
with -1e4 except the user's own next slot. Only the loss part is transcribed; the encoders are inputs.
"""

import torch


def official_inbatch_loss(prec_vec, score_embs, sample_items_id, log_mask, pop_prob_list, max_seq_len):
    """prec_vec [bs*max_seq_len, d]; score_embs [bs*(max_seq_len+1), d]; sample_items_id [bs*(max_seq_len+1)];
    log_mask [bs, max_seq_len] (1 = real history item); pop_prob_list [n_items+1] (entry 0 = 1)."""
    debias_logits = torch.log(pop_prob_list[sample_items_id.view(-1)])
    bs = log_mask.size(0)
    ce_label = torch.tensor([i * max_seq_len + i + j for i in range(bs) for j in range(1, max_seq_len + 1)],
                            dtype=torch.long)
    logits = torch.matmul(prec_vec, score_embs.t())
    logits = logits - debias_logits
    logits[:, torch.cat((log_mask, torch.ones(log_mask.size(0)).unsqueeze(-1)), dim=1).view(-1) == 0] = -1e4
    logits = logits.view(bs, max_seq_len, -1)
    id_list = sample_items_id.view(bs, -1)
    for i in range(bs):
        reject_list = id_list[i]
        u_ids = sample_items_id.repeat(max_seq_len).expand((len(reject_list), -1))
        reject_mat = reject_list.expand((u_ids.size(1), len(reject_list))).t()
        mask_mat = (u_ids == reject_mat).any(axis=0).reshape(logits[i].shape)
        for j in range(max_seq_len):
            mask_mat[j][i * (max_seq_len + 1) + j + 1] = False
        logits[i][mask_mat] = -1e4
    indices = torch.where(log_mask.view(-1) != 0)
    logits = logits.view(bs * max_seq_len, -1)
    return torch.nn.functional.cross_entropy(logits[indices], ce_label[indices])
