"""Generative perplexity and unigram entropy of generated text (the paper's two sample metrics).

Generative perplexity is the judge's perplexity on the samples: low means the judge finds them
likely, which low-temperature (low-entropy) samples game, so always report the per-sample unigram
entropy next to it (arXiv 2409.02908, App. H.1).
"""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def generative_perplexity(samples, model, tokenizer=None, batch_size: int = 16) -> float:
    """``exp`` of the judge's mean token NLL over all samples.

    Args:
        samples: a list of strings (re-tokenised with ``tokenizer``, no special tokens) or of
            token-id sequences in the judge's vocabulary.
        model: any causal LM (``model(input_ids, attention_mask).logits``).
        tokenizer: the judge's tokenizer; its BOS (or CLS) token is prepended so that every sample
            token is scored, otherwise the first token is only conditioned on.
    """
    if tokenizer is not None and samples and isinstance(samples[0], str):
        samples = tokenizer(list(samples), add_special_tokens=False)["input_ids"]
    samples = [list(map(int, s)) for s in samples]
    bos = None if tokenizer is None else tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    if bos is not None:
        samples = [[bos, *s] for s in samples]
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(samples), batch_size):
        batch = samples[i : i + batch_size]
        width = max(len(s) for s in batch)
        ids = torch.tensor([s + [0] * (width - len(s)) for s in batch], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch], device=device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        total_nll += float((nll * mask[:, 1:]).sum())
        total_tokens += int(mask[:, 1:].sum())
    return math.exp(total_nll / max(total_tokens, 1))


def unigram_entropy(sequences) -> float:
    """Mean over samples of the entropy (nats) of each sample's token frequencies (MDLM/BD3-LM's ``entropy``)."""
    values = []
    for seq in sequences:
        counts = torch.unique(torch.as_tensor(seq).reshape(-1), return_counts=True)[1].double()
        p = counts / counts.sum()
        values.append(float(-(p * p.log()).sum()))
    return sum(values) / len(values)
