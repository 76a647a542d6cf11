"""Benchmark: IISAN cached vs uncached vs LoRA vs full fine-tuning, one training step each, in one run.

    python scripts/bench_rec.py                 # MiniLM-L6 text encoder + a 12-layer ViT (random init)
    python scripts/bench_rec.py --text-only     # MiniLM only

All methods train the same SASRec with the same in-batch loss on the same batches; the text encoder
is the real all-MiniLM-L6-v2 (weights do not change the cost), the image encoder a ViT-small-sized
config at 64x64 pixels. Reports median seconds per step and training memory (weights held + grads and
Adam moments + activations saved for backward), and the ratios to full fine-tuning. Never asserts.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModel, ViTConfig, ViTModel

sys.path.insert(0, str(Path(__file__).parent))
from iisan_common import measure_training_step, minilm_path  # noqa: E402

from hfgen.adapters import BackboneItemEncoder, BackboneItemEncoderConfig, IISANConfig, IISANModel  # noqa: E402
from hfgen.models import SASRecConfig, SASRecModel  # noqa: E402
from hfgen.trainers.sequential_rec import SequentialRecommender  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=8, help="Users per step (x 11 items).")
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--title-len", type=int, default=30)
    p.add_argument("--steps", type=int, default=3, help="Timed steps after one warm-up.")
    p.add_argument("--text-only", action="store_true")
    p.add_argument("--tiny", action="store_true", help="Tiny random encoders (smoke test).")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    if a.tiny:
        from transformers import BertConfig, BertModel

        text = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=a.title_len))
        vit_cfg = ViTConfig(image_size=16, patch_size=8, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=48)
    else:
        text = AutoModel.from_pretrained(minilm_path())
        vit_cfg = ViTConfig(image_size=64, patch_size=16, hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                            intermediate_size=1536)
    encoders = {"text": text} if a.text_only else {"text": text, "image": ViTModel(vit_cfg)}
    vocab = text.config.vocab_size
    inputs = {"text": {"input_ids": torch.randint(1000 if vocab > 2000 else 1, vocab, (a.items, a.title_len)),
                       "attention_mask": torch.ones(a.items, a.title_len, dtype=torch.long)},
              "image": {"pixel_values": torch.randn(a.items, 3, vit_cfg.image_size, vit_cfg.image_size)}}
    inputs = {m: inputs[m] for m in encoders}
    modalities = list(encoders)
    g = torch.Generator().manual_seed(0)
    batches = [{"item_ids": torch.randint(1, a.items, (a.users, 11), generator=g)} for _ in range(a.steps + 1)]
    layers = {m: "every:2" if m == "image" else "all" for m in modalities}  # 7 side blocks per encoder

    def build(kind):
        bbs = copy.deepcopy(encoders)
        if kind.startswith("IISAN"):
            enc = IISANModel(IISANConfig(modalities=modalities, layers=layers, pooling="cls"), bbs)
            enc.set_item_inputs(inputs)
            if kind == "IISAN (cached)":
                enc.cache_hidden_states(progress_bar=False)
                cached = IISANModel(copy.deepcopy(enc.config))  # no backbone in memory at all
                cached.cache = enc.cache
                return cached
            return enc
        tuning = {"LoRA": "lora", "Full fine-tuning": "full", "Frozen features": "frozen"}[kind]
        enc = BackboneItemEncoder(BackboneItemEncoderConfig(modalities=modalities, tuning=tuning, pooling="cls"), bbs)
        enc.set_item_inputs(inputs)
        return enc

    results = {}
    for kind in ("Full fine-tuning", "LoRA", "IISAN (uncached)", "IISAN (cached)"):
        torch.manual_seed(0)
        model = SequentialRecommender(SASRecModel(SASRecConfig()), build(kind))
        results[kind] = measure_training_step(model, batches)
        print(kind, json.dumps({k: v if v is None else round(v, 4) for k, v in results[kind].items()}), flush=True)
    ref = results["Full fine-tuning"]
    print(f"\n{'method':<18} {'s/step':>8} {'speed-up vs FFT':>16} {'memory MB':>10} {'memory / FFT':>13} "
          f"{'trainable':>11}")
    for kind, r in results.items():
        print(f"{kind:<18} {r['step_seconds']:>8.3f} {ref['step_seconds'] / r['step_seconds']:>15.1f}x "
              f"{r['memory_bytes'] / 2**20:>10.1f} {r['memory_bytes'] / ref['memory_bytes']:>13.3f} "
              f"{r['trainable_params']:>11,d}")
    c, u = results["IISAN (cached)"], results["IISAN (uncached)"]
    print(f"\ncached vs uncached: {u['step_seconds'] / c['step_seconds']:.1f}x faster, "
          f"{c['memory_bytes'] / u['memory_bytes']:.3f} of the memory")
    return results


if __name__ == "__main__":
    main()
