"""The tiny, offline building blocks of PopcornPipeline's tests, demo and smoke runs, under the names they have always
had here; they live in [`hfgen.testing`] (models and stand-in LLMs) and [`hfgen.data.text`] (``word_tokenizer``).
"""

from hfgen.data.text import word_tokenizer
from hfgen.testing.scripted_lm import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    ExtractiveLM,
    ExtractiveLMConfig,
    ScriptedLM,
    ScriptedLMConfig,
    byte_tokenizer,
)
from hfgen.testing.tiny_models import tiny_chat_llama as tiny_causal_lm
from hfgen.testing.tiny_models import tiny_popularity_config, tiny_text_to_image, tiny_text_to_video

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "ExtractiveLM", "ExtractiveLMConfig", "ScriptedLM", "ScriptedLMConfig",
           "byte_tokenizer", "tiny_causal_lm", "tiny_popularity_config", "tiny_text_to_image", "tiny_text_to_video",
           "word_tokenizer"]
