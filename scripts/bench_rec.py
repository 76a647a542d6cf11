"""IISAN's efficiency (the paper's TPME quantities): training time per step, training memory and trainable
parameters of full fine-tuning, LoRA, adapters, IISAN uncached and IISAN cached, on the same MiniLM and batches.

    OMP_NUM_THREADS=1 python scripts/bench_rec.py --threads 1          # ~3 min on one CPU thread
    python scripts/bench_rec.py --device cuda                          # the same on a GPU
    python scripts/bench_rec.py --tiny --repeats 3 --steps 1           # smoke size (tiny random BERT)

Every arm trains the same SASRec with the same in-batch loss on the same batches; the item encoder reads the real
all-MiniLM-L6-v2 (the weights do not change the cost) with masked-mean pooling, as ``scripts/rec_amazon.py`` does.
Each repeat builds every arm afresh (interleaved, the order rotated between repeats), times ``--steps`` optimiser
steps after a warm-up and keeps their median; the record ``docs/results/raw/iisan/bench_efficiency.json`` has every
repeat's values and each as a ratio to full fine-tuning in the same repeat.

Memory is the device-independent training memory of ``iisan_common.measure_training_step``: weights held + gradients
and Adam moments of the trainable weights + the activations autograd saves for backward (torch has no CPU allocator
statistics); on CUDA the allocator's peak (``torch.cuda.max_memory_allocated``) is recorded too. Never asserts.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModel

sys.path.insert(0, str(Path(__file__).parent))
from iisan_common import efficiency_table, measure_training_step, minilm_path  # noqa: E402

from hfgen.adapters import BackboneItemEncoder, BackboneItemEncoderConfig, IISANConfig, IISANModel  # noqa: E402
from hfgen.adapters.baselines import TUNINGS  # noqa: E402
from hfgen.models import SASRecConfig, SASRecModel  # noqa: E402
from hfgen.results import write_record  # noqa: E402
from hfgen.trainers.sequential_rec import SequentialRecommender  # noqa: E402

FFT = "Full fine-tuning"
#: Arm -> the ``BackboneItemEncoderConfig.tuning`` of a backbone baseline, or None for IISAN.
ARMS = {FFT: "full", "LoRA": "lora", "Adapters": "adapter", "IISAN (uncached)": None, "IISAN (cached)": None}


def tiny_text_encoder(title_len: int):
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=title_len))


def build_encoder(arm: str, text, inputs: dict, seed: int) -> tuple[torch.nn.Module, float | None]:
    """The item encoder of one arm on a copy of ``text`` (and, for IISAN cached, the seconds its cache took)."""
    backbone = copy.deepcopy(text)
    torch.manual_seed(seed)
    if ARMS[arm] is not None:
        enc = BackboneItemEncoder(BackboneItemEncoderConfig(modalities=["text"], layers="last", pooling="mean",
                                                            tuning=ARMS[arm]), {"text": backbone})
        enc.set_item_inputs({"text": inputs})
        return enc, None
    enc = IISANModel(IISANConfig(modalities=["text"], layers="all", pooling="mean"), {"text": backbone})
    enc.set_item_inputs({"text": inputs})
    if arm != "IISAN (cached)":
        return enc, None
    start = time.perf_counter()
    enc.cache_hidden_states(progress_bar=False)
    seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    cached = IISANModel(copy.deepcopy(enc.config))  # no backbone in memory at all
    cached.cache = enc.cache
    return cached, seconds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=8, help="Users per step (x 11 items each).")
    p.add_argument("--items", type=int, default=400, help="Items in the table (random titles).")
    p.add_argument("--title-len", type=int, default=30, help="Title tokens (the papers use 30).")
    p.add_argument("--steps", type=int, default=3, help="Timed steps per arm and repeat (after one warm-up).")
    p.add_argument("--repeats", type=int, default=3, help="Repeats (each builds every arm afresh).")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (recorded).")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--tiny", action="store_true", help="A tiny random BERT instead of MiniLM (smoke test).")
    p.add_argument("--raw-dir", default=None, help="The record goes to RAW_DIR/iisan/ (default: docs/results/raw).")
    a = p.parse_args(argv)
    for name in ("users", "items", "title_len", "steps", "repeats"):
        if getattr(a, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(a, name)}.")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`--device cuda` was given but CUDA is not available.")
    if a.threads:
        torch.set_num_threads(a.threads)
    started = time.time()
    text = tiny_text_encoder(a.title_len) if a.tiny else AutoModel.from_pretrained(minilm_path(), dtype=torch.float32)
    text = text.to(a.device)
    vocab = text.config.vocab_size
    g = torch.Generator().manual_seed(0)
    inputs = {"input_ids": torch.randint(1000 if vocab > 2000 else 1, vocab, (a.items, a.title_len), generator=g),
              "attention_mask": torch.ones(a.items, a.title_len, dtype=torch.long)}
    inputs = {k: v.to(a.device) for k, v in inputs.items()}
    arms = [arm for arm, tuning in ARMS.items() if tuning is None or tuning in TUNINGS]
    missing = {arm: "no adapter baseline in hfgen.adapters.baselines" for arm in ARMS if arm not in arms}

    metrics: dict[str, dict[str, list]] = {arm: {} for arm in arms}
    cache_seconds = []
    for repeat in range(a.repeats):
        g = torch.Generator().manual_seed(repeat)
        batches = [{"item_ids": torch.randint(1, a.items, (a.users, 11), generator=g)} for _ in range(a.steps + 1)]
        order = arms[repeat % len(arms):] + arms[:repeat % len(arms)]
        for arm in order:
            encoder, seconds = build_encoder(arm, text, inputs, seed=repeat)
            if seconds is not None:
                cache_seconds.append(round(seconds, 3))
            torch.manual_seed(repeat)
            model = SequentialRecommender(SASRecModel(SASRecConfig()), encoder).to(a.device)
            result = measure_training_step(model, batches)
            del model, encoder
            for key, value in result.items():
                if value is not None:
                    metrics[arm].setdefault(key, []).append(value)
            print(f"repeat {repeat}", arm, json.dumps({k: v if v is None else round(v, 4) for k, v in result.items()}),
                  flush=True)
    for arm in arms:
        for key, ratio in (("step_seconds", "time_ratio_to_fft"), ("step_cpu_seconds", "cpu_time_ratio_to_fft"),
                           ("memory_bytes", "memory_ratio_to_fft"),
                           ("trainable_params", "params_ratio_to_fft")):
            metrics[arm][ratio] = [x / f for x, f in zip(metrics[arm][key], metrics[FFT][key])]
    settings = {"encoder": "tiny random BERT (smoke)" if a.tiny else "sentence-transformers/all-MiniLM-L6-v2",
                "users_per_step": a.users, "items_per_user": 11, "items": a.items, "title_len": a.title_len,
                "steps": a.steps, "repeats": a.repeats, "pooling": "masked mean", "threads": torch.get_num_threads(),
                "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
                "memory": "weights held + gradients and two Adam moments of the trainable weights + activations "
                          "saved for backward (saved_tensors_hooks, one count per storage); device-independent"
                          + ("; peak GPU memory: torch.cuda.max_memory_allocated" if a.device == "cuda" else ""),
                "cache_seconds": cache_seconds, "arms_not_available": missing,
                "claim": {"text": "IISAN (cached) trains faster per step than full fine-tuning on the same encoder and "
                                  "batch (the paper's training-time efficiency, TPME)",
                          "arm": "IISAN (cached)", "baseline": FFT, "metric": "step_seconds", "higher_is_better": False}}
    path = write_record("iisan", "bench_efficiency", seeds=list(range(a.repeats)), metrics=metrics, settings=settings,
                        started=started, device=a.device, raw_dir=a.raw_dir)
    record = {"seeds": list(range(a.repeats)), "settings": settings, "metrics": metrics, "path": str(path)}
    print(efficiency_table(record))
    return record


if __name__ == "__main__":
    main()
