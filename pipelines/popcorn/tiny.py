"""Tiny, offline building blocks for PopcornPipeline's tests, demo and smoke runs (nothing downloads).

- [`byte_tokenizer`]: a byte-level tokenizer (token id = byte value) with chat special tokens and a
  chat template, so any text round-trips exactly;
- [`word_tokenizer`]: a word-level tokenizer over a corpus (for titles);
- [`tiny_causal_lm`], [`tiny_text_to_image`], [`tiny_text_to_video`]: random-weight
  transformers / Diffusers models built from configs (diffusers' own fast-test sizes);
- [`ScriptedLM`]: a real ``PreTrainedModel`` + ``GenerationMixin`` whose next-token distribution is
  a point mass: after the last assistant marker it writes ``script(prompt)`` byte by byte, then EOS.
  The base class writes a fixed answer; [`ExtractiveLM`] writes a plan built only from words of its
  prompt (the query, and the retrieved references when the prompt has them): a deterministic stand-in
  for an instruction LLM where none can be downloaded.
"""

from __future__ import annotations

import json
import math
import re

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel

SPECIAL_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<pad>")
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what the ByteLevel pre-tokenizer emits)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), ord("\xff") + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in keep else next(extra)) for b in range(256)}


def byte_tokenizer(model_max_length: int = 4096):
    """Byte-level tokenizer: ids 0..255 are the bytes, then [`SPECIAL_TOKENS`] (EOS ``<|end|>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<pad>", bos_token="<|system|>",
                                   unk_token="<pad>", chat_template=CHAT_TEMPLATE, model_max_length=model_max_length)


def word_tokenizer(corpus: list[str], max_length: int = 16):
    """Lower-cased word-level tokenizer over ``corpus`` with ``[PAD] [UNK] [CLS] [SEP]`` (BERT-style)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = sorted({w for text in corpus for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", eos_token="[SEP]", model_max_length=max_length)


def tiny_causal_lm(tokenizer, seed: int = 0):
    """A random 2-layer Llama over ``tokenizer``'s vocabulary (writes gibberish)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


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
    """A [`PopularityConfig`] with 2-layer BERT / ViT encoders of width 32."""
    from .modeling_popularity import PopularityConfig

    text = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64, pad_token_id=0)
    vision = dict(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64)
    return PopularityConfig(text_config=text, vision_config=vision, feature_dim=32, num_frames=num_frames,
                            num_retrieved=num_retrieved, mlp_dims=(64, 32), **kwargs)


class ScriptedLMConfig(PretrainedConfig):
    """Configuration of [`ScriptedLM`]: ``script`` is the answer text; ids come from [`byte_tokenizer`]."""

    model_type = "hfgen_scripted_lm"

    def __init__(self, script: str = "", vocab_size: int = 256 + len(SPECIAL_TOKENS), assistant_token_id: int = 258,
                 eos_token_id: int = 259, pad_token_id: int = 260, **kwargs):
        self.script, self.vocab_size, self.assistant_token_id = script, vocab_size, assistant_token_id
        self.num_hidden_layers = 0  # no layers, no cache
        super().__init__(eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=False, **kwargs)


class ScriptedLM(PreTrainedModel, GenerationMixin):
    """A causal LM whose answer is ``self.script(prompt_text)``, emitted byte by byte then EOS (greedy or
    sampled, the distribution is a point mass). Works with ``pipeline("text-generation")``; ``forward``
    returns the logits of the last position only (all that generation reads)."""

    config_class = ScriptedLMConfig
    main_input_name = "input_ids"

    def __init__(self, config: ScriptedLMConfig):
        super().__init__(config)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device and dtype
        self._answers: dict[str, list[int]] = {}
        self.post_init()

    def script(self, prompt: str) -> str:
        return self.config.script

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        return {"input_ids": input_ids}  # no cache: the answer depends on the whole context

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        from transformers.modeling_outputs import CausalLMOutputWithPast

        B, L = input_ids.shape
        logits = torch.full((B, 1, self.config.vocab_size), -1e4, dtype=self.anchor.dtype, device=input_ids.device)
        for b, row in enumerate(input_ids.tolist()):
            marks = [i for i, t in enumerate(row) if t == self.config.assistant_token_id]
            start = marks[-1] + 1 if marks else L
            prompt = bytes(t for t in row[:start] if t < 256).decode("utf-8", errors="replace")
            if prompt not in self._answers:  # the answer is a function of the prompt: compute it once
                self._answers = {prompt: list(self.script(prompt).encode("utf-8")) + [self.config.eos_token_id]}
            answer = self._answers[prompt]
            logits[b, -1, answer[min(L - start, len(answer) - 1)]] = 0.0
        return CausalLMOutputWithPast(logits=logits + self.anchor * 0)


class ExtractiveLMConfig(ScriptedLMConfig):
    model_type = "hfgen_extractive_lm"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)


class ExtractiveLM(ScriptedLM):
    """A [`ScriptedLM`] that writes a plan from words of its prompt only.

    Basic prompt: title, cover and video prompts restate the query. With references (LLMPopcorn's
    enhanced prompt): the title adds the two title words whose references have the most comments above
    the references' mean (log scale); the cover and video prompts reuse the most commented popular
    reference's cover description and caption. With a reasoning chain it writes a short chain of thought first.
    """

    config_class = ExtractiveLMConfig

    def script(self, prompt: str) -> str:
        m = re.search(r"Below is the user query:\s*\n\n(.*?)(?:\n\n|$)", prompt, flags=re.DOTALL)
        query = (m.group(1) if m else prompt[-200:]).strip().rstrip(".")
        refs = re.findall(r"\((Positive|Negative) Sample[^)]*\):\nTitle: (.*?)\nCover Desc: (.*?)\nDesc: (.*?)\n"
                          r"Comment Count: (\d+)", prompt)
        pos = [r for r in refs if r[0] == "Positive"]
        neg = [r for r in refs if r[0] == "Negative"]
        title, cover, video = query, f"A cover image for: {query}", f"A 3-second clip: {query}"
        if pos:
            # title words whose references draw more comments than the references' average (log scale)
            logc = {i: math.log2(1 + int(r[4])) for i, r in enumerate(refs)}
            mean = sum(logc.values()) / len(logc)
            gain: dict[str, list[float]] = {}
            for i, r in enumerate(refs):
                for w in set(r[1].lower().split()):
                    gain.setdefault(w, []).append(logc[i] - mean)
            query_words = set(query.lower().split())
            best = sorted((w for w, g in gain.items() if sum(g) / len(g) > 0 and w not in query_words),
                          key=lambda w: (-sum(gain[w]) / len(gain[w]), w))
            title = " ".join(best[:2] + [query])[:50]
            top = max(pos, key=lambda r: int(r[4]))  # the most commented popular reference
            cover, video = top[2], top[3]
        plan = json.dumps({"title": title, "cover_prompt": cover, "video_prompt": video})
        if "Reasoning Chain" in prompt:
            return f"Step 1: {len(pos)} popular and {len(neg)} unpopular references analysed.\nFinal answer:\n{plan}"
        return plan


for _config, _model in ((ScriptedLMConfig, ScriptedLM), (ExtractiveLMConfig, ExtractiveLM)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModelForCausalLM.register(_config, _model, exist_ok=True)
