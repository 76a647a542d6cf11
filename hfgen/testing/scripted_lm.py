"""Offline stand-ins for an instruction LLM (nothing downloads), for PopcornPipeline's tests, demo and smoke runs.

- [`byte_tokenizer`]: a byte-level tokenizer (token id = byte value) with chat special tokens and a
  chat template, so any text round-trips exactly;
- [`ScriptedLM`]: a real ``PreTrainedModel`` + ``GenerationMixin`` whose next-token distribution is
  a point mass: after the last assistant marker it writes ``script(prompt)`` byte by byte, then EOS.
  The base class writes a fixed answer; [`ExtractiveLM`] writes a plan built only from words of its
  prompt (the query, and the retrieved references when the prompt has them): a deterministic stand-in
  for an instruction LLM where none can be downloaded.

Both register with ``AutoConfig`` / ``AutoModelForCausalLM`` when this module is imported.
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
