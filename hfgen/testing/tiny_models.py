"""Tiny, seeded models built from configs (nothing downloaded): the one home of the small models that hfgen's tests,
demos and smoke runs build.

Each builder seeds ``torch`` before initialising, so the same arguments give the same weights; keyword arguments
override the config's fields.

- [`tiny_llama`], [`tiny_chat_llama`] (over a chat tokenizer, e.g. [`hfgen.testing.scripted_lm.byte_tokenizer`]),
  [`tiny_qwen2_lm`] (the arithmetic task's policy), [`tiny_bert_mlm`]: transformers language models;
- [`tiny_unet2d`]: a Diffusers UNet on 8x8 images;
- [`tiny_text_to_image`], [`tiny_text_to_video`]: random Diffusers pipelines (diffusers' own fast-test sizes);
- [`tiny_popularity_config`]: a small [`~hfgen.pipelines.popcorn.modeling_popularity.PopularityConfig`].
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


def tiny_chat_llama(tokenizer, seed: int = 0):
    """A random 2-layer Llama over ``tokenizer``'s vocabulary and special tokens, in eval mode (writes gibberish)."""
    return tiny_llama(len(tokenizer), seed, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id).eval()


def tiny_qwen2_lm(
    tokenizer,
    hidden_size: int = 64,
    intermediate_size: int = 256,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 32,
    seed: int = 0,
):
    """A ``Qwen2ForCausalLM`` with tied embeddings over ``tokenizer`` (about 0.1 M parameters as defaulted, sized for
    [`hfgen.data.arithmetic`]); the global RNG is left as it was."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


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


def tiny_text_to_image(tokenizer, seed: int = 0):
    """A random Stable Diffusion pipeline (UNet 8/16 channels, CLIP text encoder of width 32)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=4, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)).eval()
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=DDIMScheduler(clip_sample=False, steps_offset=1), safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)


def tiny_text_to_video(tokenizer, seed: int = 0):
    """A random LTX-Video pipeline with diffusers' fast-test sizes and a T5 encoder of width 32."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                             num_layers=1, caption_channels=32)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
        timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                           num_heads=4, pad_token_id=tokenizer.pad_token_id,
                                           eos_token_id=tokenizer.eos_token_id)).eval()
    return LTXPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                       text_encoder=text_encoder, tokenizer=tokenizer)


def tiny_popularity_config(vocab_size: int, image_size: int = 32, num_frames: int = 4, num_retrieved: int = 0, **kwargs):
    """A [`~hfgen.pipelines.popcorn.modeling_popularity.PopularityConfig`] with 2-layer BERT / ViT encoders of width 32."""
    from hfgen.pipelines.popcorn.modeling_popularity import PopularityConfig

    text = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64, pad_token_id=0)
    vision = dict(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64)
    return PopularityConfig(text_config=text, vision_config=vision, feature_dim=32, num_frames=num_frames,
                            num_retrieved=num_retrieved, mlp_dims=(64, 32), **kwargs)
