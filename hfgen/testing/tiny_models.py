"""Tiny, seeded models built from configs (nothing downloaded), the one home of the test suite's small models.

Each builder seeds ``torch`` before initialising, so the same arguments give the same weights; keyword arguments
override the config's fields.
"""

from __future__ import annotations

import torch


def tiny_llama(vocab_size: int = 16, seed: int = 0, **config):
    """A one-layer [`~transformers.LlamaForCausalLM`] (hidden size 16)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    defaults = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, **{**defaults, **config}))


def tiny_bert_mlm(vocab_size: int, seed: int = 0, **config):
    """A one-layer [`~transformers.BertForMaskedLM`] without dropout (hidden size 32)."""
    from transformers import BertConfig, BertForMaskedLM

    defaults = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(vocab_size=vocab_size, **{**defaults, **config}))


def tiny_unet2d(seed: int = 0, **config):
    """A two-level [`~diffusers.UNet2DModel`] on 8x8 images taking ``[x_t, y]`` (2 channels in, 1 out)."""
    from diffusers import UNet2DModel

    defaults = dict(sample_size=8, in_channels=2, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                    down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                    norm_num_groups=4)
    torch.manual_seed(seed)
    return UNet2DModel(**{**defaults, **config})
