"""Benchmark: one training step of DFN on cached states vs DFN on images vs full fine-tuning (same batch).

Also times MF^2's text encoding with identical descriptions encoded once (``encode_texts``) vs every row.
Prints times and ratios against the baseline measured in the same run; asserts nothing about speed.

    python scripts/bench_mf2.py --batch-size 64 --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hfgen.adapters.dfn import DFNConfig, DFNModel
from hfgen.data.faces import build_face_tokenizer, make_synthetic_faces
from hfgen.demos.mf2 import tiny_mf2_config
from hfgen.models.mf2 import MF2Model
from hfgen.trainers.mf2 import MF2DataCollator


def timed(fn, repeats):
    """Seconds of each of ``repeats`` calls after one warm-up call."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _ms(times):
    """``median [min, max]`` in ms over the repeats."""
    return f"{1000 * statistics.median(times):8.1f} [{1000 * min(times):.1f}, {1000 * max(times):.1f}] ms"


def main(batch_size=64, repeats=10, seed=0):
    torch.manual_seed(seed)
    tok = build_face_tokenizer()
    mf2 = MF2Model(tiny_mf2_config(tok))
    faces = make_synthetic_faces(batch_size, seed=seed)
    px = faces.pixel_values()
    y_au, y_emo = torch.from_numpy(faces.au_labels), torch.from_numpy(faces.emotions).long()
    dfn = DFNModel(DFNConfig(), mf2)
    states = dfn.cache_states(px)
    opt = torch.optim.AdamW([p for p in dfn.parameters() if p.requires_grad], lr=1e-3)

    def dfn_step(**inputs):
        opt.zero_grad()
        dfn(**inputs, au_labels=y_au, emotion_labels=y_emo).loss.backward()
        opt.step()

    full = MF2Model(tiny_mf2_config(tok))
    full_opt = torch.optim.AdamW(full.parameters(), lr=1e-3)
    batch = MF2DataCollator(tok)([faces[i] for i in range(batch_size)])

    def full_step():  # full MF^2 training step (the cost full fine-tuning pays per step)
        full_opt.zero_grad()
        full(**batch, return_loss=True).loss.backward()
        full_opt.step()

    results = {
        "full MF2 step (baseline)": timed(full_step, repeats),
        "DFN step on images": timed(lambda: dfn_step(pixel_values=px), repeats),
        "DFN step on cached states": timed(lambda: dfn_step(**states), repeats),
    }
    base = statistics.median(results["full MF2 step (baseline)"])
    print(f"batch {batch_size}, median [min, max] of {repeats} repeats, {torch.get_num_threads()} threads")
    for name, t in results.items():
        # speed-up interval: the slowest vs fastest pairing of the two sets of repeats
        lo, hi = min(results["full MF2 step (baseline)"]) / max(t), max(results["full MF2 step (baseline)"]) / min(t)
        print(f"{name:28s} {_ms(t)}   speed-up x{base / statistics.median(t):.1f} [{lo:.1f}, {hi:.1f}]")
    T = batch["au_input_ids"].shape[-1]
    ids, mask = batch["au_input_ids"].reshape(-1, T), batch["au_attention_mask"].reshape(-1, T)
    with torch.no_grad():
        every = timed(lambda: mf2.get_text_features(ids, mask), repeats)
        once = timed(lambda: mf2.encode_texts(ids, mask), repeats)
    print(f"AU descriptions ({len(ids)} rows): every row {_ms(every)}, distinct once {_ms(once)}, "
          f"speed-up x{statistics.median(every) / statistics.median(once):.1f}")
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    main(a.batch_size, a.repeats)
