"""LLM backends of [`PopcornPipeline`]: one method, ``generate(messages) -> str``.

- [`TransformersLLM`]: any local transformers causal LM with a chat template, through the
  ``text-generation`` pipeline (LLMPopcorn runs Llama-3.3-70B / Qwen2.5-72B / Mistral-Large this way).
- [`OpenAIChatLLM`]: any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, DeepSeek,
  vLLM, Ollama, ``transformers serve``) through the ``openai`` client (>= 1.0; the official
  ``infer_gpt`` uses the removed ``openai.ChatCompletion`` API).

Any object with such a ``generate`` method can be passed as the pipeline's ``llm``.
"""

from __future__ import annotations

from typing import Any

from .parsing import PopcornStageError

# LLMPopcorn's sampling settings (LLMPopcorn.py); max_new_tokens is 5000 there.
DEFAULT_GENERATION_KWARGS = {"max_new_tokens": 1024, "do_sample": True, "temperature": 0.7, "top_p": 0.9,
                             "repetition_penalty": 1.1}


class LLMBackend:
    """The interface: ``generate(messages, **kwargs) -> str`` (the assistant's answer)."""

    def generate(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        raise NotImplementedError


class TransformersLLM(LLMBackend):
    """A local causal LM.

    Args:
        model: a ``PreTrainedModel``, or a model id / local folder for ``from_pretrained``.
        tokenizer: its tokenizer (needs a ``chat_template``); loaded from ``model`` when it is a path.
        **generation_kwargs: overrides of [`DEFAULT_GENERATION_KWARGS`] (e.g. ``do_sample=False``).
    """

    def __init__(self, model, tokenizer=None, **generation_kwargs: Any):
        from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model)
        if tokenizer is None:
            raise ValueError("`tokenizer` is required when `model` is a model object.")
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("`tokenizer` has no `chat_template`; the LLM stage sends chat messages.")
        self.generation_kwargs = {**DEFAULT_GENERATION_KWARGS, **generation_kwargs}
        if not self.generation_kwargs.get("do_sample", True):
            for key in ("temperature", "top_p"):
                self.generation_kwargs.pop(key, None)
        self.pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)

    @property
    def name(self) -> str:
        return getattr(self.pipe.model.config, "_name_or_path", "") or type(self.pipe.model).__name__

    def generate(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        out = self.pipe(messages, return_full_text=False, **{**self.generation_kwargs, **kwargs})
        text = out[0]["generated_text"]
        return text if isinstance(text, str) else text[-1]["content"]  # str, or the chat with the answer last


class OpenAIChatLLM(LLMBackend):
    """An OpenAI-compatible chat endpoint.

    Args:
        model: the served model's name (``"deepseek-chat"``, ``"gpt-4o"``, a vLLM model id ...).
        base_url: the endpoint, e.g. ``"http://127.0.0.1:8000/v1"``; ``None`` is OpenAI's.
        api_key: the key (``"EMPTY"`` is fine for local servers); defaults to ``$OPENAI_API_KEY``.
        timeout / max_retries: passed to ``openai.OpenAI`` (its own retries of connection and 5xx errors).
        **create_kwargs: passed to ``chat.completions.create`` (``temperature``, ``max_tokens`` ...).
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 2, client=None, **create_kwargs: Any):
        if not model:
            raise ValueError("`model` must name the served model.")
        if client is None:
            try:
                import openai
            except ImportError as err:
                raise ImportError("OpenAIChatLLM needs the `openai` package: `pip install openai`.") from err
            import os

            client = openai.OpenAI(api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY", base_url=base_url,
                                   timeout=timeout, max_retries=max_retries)
        self.client, self.model, self.create_kwargs = client, model, create_kwargs

    @property
    def name(self) -> str:
        return self.model

    def generate(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        import openai

        try:
            resp = self.client.chat.completions.create(model=self.model, messages=messages, **{**self.create_kwargs, **kwargs})
        except openai.APIConnectionError as err:
            raise PopcornStageError("llm", f"could not reach the OpenAI-compatible endpoint {self.client.base_url}: "
                                           f"{type(err).__name__}: {err}") from err
        except openai.APIStatusError as err:
            raise PopcornStageError("llm", f"the endpoint {self.client.base_url} answered HTTP {err.status_code}: "
                                           f"{err.message}") from err
        if not resp.choices or resp.choices[0].message.content is None:
            raise PopcornStageError("llm", f"the endpoint {self.client.base_url} returned no message content.")
        return resp.choices[0].message.content
