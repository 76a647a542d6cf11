"""Sampling a masked diffusion model (MDM) whose denoiser is any masked language model (arXiv 2409.02908)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput, replace_example_docstring

from hfgen.hub import HfgenPipelineMixin
from hfgen.validation import check_arguments, check_denoiser_inputs

from ..utils import CallbackStateMixin, check_callback_inputs, run_callback
from .masking import TIME_INPUTS, time_keyword, total_noise
from .scheduling_ancestral_masked import AncestralMaskedScheduler
from .scheduling_first_hitting import FirstHittingScheduler

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from transformers import AutoModelForMaskedLM, AutoTokenizer
        >>> from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline

        >>> path = "path/to/mdm"  # e.g. the output_dir of hfgen.trainers.MaskedDiffusionTrainer
        >>> pipe = MaskedDiffusionPipeline(
        ...     denoiser=AutoModelForMaskedLM.from_pretrained(path),
        ...     tokenizer=AutoTokenizer.from_pretrained(path),
        ...     scheduler=FirstHittingScheduler(),
        ... )
        >>> out = pipe(seq_len=128, num_samples=4, generator=torch.Generator().manual_seed(0))
        >>> out.nfe  # one network call per token
        128
        >>> pipe.scheduler = AncestralMaskedScheduler.from_config(pipe.scheduler.config)
        >>> out = pipe(prompt="The [MASK] statement", seq_len=32, num_inference_steps=1000)
        ```
"""


@dataclass
class MaskedDiffusionPipelineOutput(BaseOutput):
    """
    Args:
        sequences (`torch.LongTensor` or `np.ndarray` of shape `(batch_size, seq_len)`): token ids.
        texts (`list[str]`, *optional*): decoded sequences when ``output_type="text"``.
        nfe (`int`): number of denoiser calls (function evaluations) the batch took.
    """

    sequences: torch.LongTensor | np.ndarray
    texts: list[str] | None
    nfe: int


class MaskedDiffusionPipeline(HfgenPipelineMixin, CallbackStateMixin, DiffusionPipeline):
    r"""Generate text with a masked diffusion model.

    The optimal MDM denoiser is ``p(x^l | visible tokens)`` at every time (Prop. 3.2), which is what
    a masked language model estimates, so any ``transformers`` ``AutoModelForMaskedLM`` is a
    denoiser. A denoiser whose ``forward`` takes ``timesteps`` is time-conditioned: it is called with
    ``timesteps`` of shape ``(batch,)`` (never cached), holding the time ``t`` or, with
    ``time_input="sigma"``, MDLM's noise level ``sigma(t) = -log alpha(t)`` (what MDLM's backbone
    receives; use the ``"loglinear"`` schedule, for which ``sigma(1)`` is finite), through the ``sigma``
    argument instead when ``forward`` has one (``MDLMDiTForMaskedLM``), in float32 at least whatever the
    denoiser's dtype. To feed a denoiser
    anything else, override [`denoiser_time`] (the time it receives) or [`denoise`] (the call).

    Tokens never sampled: the mask, and the rows beyond ``len(tokenizer)``. With a masked-LM tokenizer
    (one that has a ``[CLS]``/``[SEP]`` pair or no EOS) every special token is banned too, because
    those frame the text. With a causal-LM tokenizer whose EOS is a real token (GPT-2, as in MDLM's
    OpenWebText models, where ``<|endoftext|>`` separates documents) only the mask and a padding token
    distinct from EOS are banned, so EOS can be generated. For variable-length text with a masked-LM
    tokenizer, pass ``end_token_id`` (e.g. its EOS or padding token, the one the training texts were padded with):
    that token may then be generated, and decoded texts end at it.

    Args:
        denoiser ([`~transformers.PreTrainedModel`]): a masked LM, ``denoiser(input_ids=x).logits``
            of shape ``(batch, seq_len, vocab)``.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): its tokenizer; gives the mask token,
            the special tokens that are never sampled, prompts and decoding. May be ``None`` when
            ``input_ids`` and ``mask_token_id`` are passed.
        scheduler ([`FirstHittingScheduler`] or [`AncestralMaskedScheduler`]): the sampler.
    """

    model_cpu_offload_seq = "denoiser"
    _callback_tensor_inputs = ["sequences", "logits"]

    def __init__(self, denoiser, tokenizer, scheduler: FirstHittingScheduler | AncestralMaskedScheduler):
        super().__init__()
        self.register_modules(denoiser=denoiser, tokenizer=tokenizer, scheduler=scheduler)

    def check_inputs(self, prompt, input_ids, seq_len, num_samples, num_inference_steps, temperature,
                     mask_token_id, output_type):
        if not isinstance(self.scheduler, (FirstHittingScheduler, AncestralMaskedScheduler)):
            raise ValueError(
                "`scheduler` must be a FirstHittingScheduler or an AncestralMaskedScheduler (masked diffusion), "
                f"got {type(self.scheduler).__name__}."
            )
        if mask_token_id is None:
            raise ValueError(
                "The denoiser has no mask token: its tokenizer defines no `mask_token_id`; pass `mask_token_id` "
                "or use a masked-LM tokenizer."
            )
        vocab_size = getattr(getattr(self.denoiser, "config", None), "vocab_size", None)
        if vocab_size is not None and not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"`mask_token_id` {mask_token_id} is outside the denoiser's vocabulary of {vocab_size}.")
        if prompt is not None and input_ids is not None:
            raise ValueError("Pass either `prompt` or `input_ids`, not both.")
        if (prompt is not None or output_type == "text") and self.tokenizer is None:
            raise ValueError("`prompt` and `output_type='text'` need a `tokenizer`.")
        if input_ids is None and (not isinstance(seq_len, int) or seq_len <= 0):
            raise ValueError(f"`seq_len` must be a positive integer, got {seq_len!r}.")
        if input_ids is not None:
            if input_ids.ndim not in (1, 2) or input_ids.shape[-1] == 0 or input_ids.dtype != torch.long:
                raise ValueError("`input_ids` must be a non-empty int64 tensor of shape (seq_len,) or (batch, seq_len).")
            if seq_len is not None and seq_len != input_ids.shape[-1]:
                raise ValueError(f"`seq_len` {seq_len} differs from the length of `input_ids` {input_ids.shape[-1]}.")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be a positive integer, got {num_samples!r}.")
        if num_inference_steps is not None and (not isinstance(num_inference_steps, int) or num_inference_steps < 1):
            raise ValueError(f"`num_inference_steps` must be a positive integer or None, got {num_inference_steps!r}.")
        if not temperature > 0:
            raise ValueError(f"`temperature` must be positive, got {temperature!r}.")
        if output_type not in ("text", "pt", "np", "latent"):
            raise ValueError(f"`output_type` must be 'text', 'pt', 'latent' or 'np', got {output_type!r}.")

    def prepare_sequences(self, prompt, input_ids, seq_len, num_samples, mask_token_id, device):
        """The starting ``x_1``: prompt tokens first, the rest masked; mask tokens inside a prompt are infilled."""
        if input_ids is None:
            prompts = [""] if prompt is None else [prompt] if isinstance(prompt, str) else list(prompt)
            rows = []
            for text in prompts:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                if len(ids) > seq_len:
                    raise ValueError(f"The prompt {text[:40]!r} has {len(ids)} tokens, more than `seq_len`={seq_len}.")
                rows.append(ids + [mask_token_id] * (seq_len - len(ids)))
            input_ids = torch.tensor(rows, dtype=torch.long)
        return input_ids.reshape(-1, input_ids.shape[-1]).repeat_interleave(num_samples, dim=0).to(device)

    def eos_is_a_token(self) -> bool:
        """Whether the tokenizer's EOS is text (a causal-LM tokenizer such as GPT-2's) rather than framing."""
        tok = self.tokenizer
        return tok is not None and tok.eos_token_id is not None and tok.sep_token_id is None and tok.cls_token_id is None

    def forbidden_tokens(self, vocab_size, device):
        """Tokens never sampled besides the mask: padded rows beyond the tokenizer, and its special tokens
        (all of them for a masked-LM tokenizer; only a padding token distinct from EOS when EOS is a token)."""
        forbidden = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        if self.tokenizer is not None:
            tok = self.tokenizer
            if self.eos_is_a_token():
                banned = [tok.pad_token_id] if tok.pad_token_id not in (None, tok.eos_token_id) else []
            else:
                banned = tok.all_special_ids
            forbidden[[i for i in banned if i < vocab_size]] = True
            forbidden[len(tok):] = True
        return forbidden

    def denoiser_time(self, timestep, time_input: str = "t"):
        """What a time-conditioned denoiser receives as ``timesteps``: ``t``, or ``sigma(t) = -log alpha(t)``
        of the scheduler's masking schedule (``time_input="sigma"``, MDLM's convention)."""
        if time_input == "t":
            return timestep
        config = self.scheduler.config
        sigma = total_noise(config.masking_schedule, torch.as_tensor(timestep, dtype=torch.float64), config.schedule_eps)
        if config.masking_schedule != "loglinear" and not torch.isfinite(sigma).all():  # loglinear: finite, no sync
            raise ValueError(f"sigma(t) is infinite at t = 1 for the {config.masking_schedule!r} schedule; use "
                             "masking_schedule='loglinear' (MDLM) with `time_input='sigma'`.")
        return sigma

    def denoise(self, sample, timestep, time_conditioned, time_input="t"):
        """One network call: the denoiser's logits at ``sample`` (and at [`denoiser_time`] if it takes one)."""
        kwargs = {}
        if time_conditioned:  # in float32 at least, whatever the denoiser's dtype: bf16 rounds t near 1 (sigma 6.9 -> 5.5)
            time = self.denoiser_time(timestep, time_input)
            dtype = torch.promote_types(self.denoiser.dtype, torch.float32)
            time = time.to(device=sample.device, dtype=dtype).expand(sample.shape[0])
            kwargs[time_keyword(self.denoiser, time_input)] = time
        return self.denoiser(input_ids=sample, **kwargs).logits

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        input_ids: torch.LongTensor | None = None,
        seq_len: int | None = None,
        num_samples: int = 1,
        num_inference_steps: int | None = None,
        temperature: float = 1.0,
        mask_token_id: int | None = None,
        use_cache: bool = True,
        time_input: str = "t",
        end_token_id: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "text",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] = ["sequences"],  # noqa: B006 (Diffusers' signature)
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`, *optional*): text placed at the start of each sequence
                (never changed); the rest is generated. Mask tokens inside the prompt are infilled.
            input_ids (`torch.LongTensor` of shape `(seq_len,)` or `(batch, seq_len)`, *optional*):
                a template instead of ``prompt``: positions equal to the mask token are generated,
                all others are kept.
            seq_len (`int`, *optional*, defaults to 128): sequence length without ``input_ids``.
            num_samples (`int`, defaults to 1): sequences per prompt (or per template row).
            num_inference_steps (`int`, *optional*): first-hitting sampler: network calls, with
                ``ceil(L / steps)`` tokens per call (``None``: the scheduler's ``tokens_per_step``,
                1 = exact FHS); ancestral sampler: the number of steps ``T`` (``None``: 1000).
            temperature (`float`, defaults to 1.0): divides the denoiser's logits.
            mask_token_id (`int`, *optional*): defaults to ``tokenizer.mask_token_id``.
            use_cache (`bool`, defaults to `True`): reuse the last network output when no token
                changed since it was computed (MDLM's ``ddpm_cache``; only time-agnostic denoisers).
            time_input (`str`, defaults to `"t"`): what a time-conditioned denoiser (one whose
                ``forward`` takes ``timesteps``) receives: ``"t"`` or ``"sigma"`` (``-log alpha(t)``,
                MDLM's backbone input). Ignored for time-agnostic denoisers.
            end_token_id (`int`, *optional*): a token the sampler may generate although it is special (the
                tokenizer's EOS or padding token, as LLaDA and MDLM models end texts): variable-length generation.
                Train on texts padded with this token (no ``attention_mask``, so the padding is learned); decoded
                ``texts`` stop at its first occurrence, ``sequences`` keep the full length.
            generator (`torch.Generator` or a list of one per sequence, *optional*): the randomness. As in
                Diffusers' ``randn_tensor``, numbers are drawn on the generator's device and then moved, so a
                CPU generator gives the same random numbers wherever the denoiser runs (a generator on the
                denoiser's device is faster for the ancestral sampler, which draws ``B x L x V`` per step).
            output_type (`str`, defaults to `"text"`): ``"text"`` (token ids and decoded text),
                ``"pt"`` or ``"latent"`` (token ids, a tensor) or ``"np"`` (token ids, an array).
            return_dict (`bool`, defaults to `True`): return a
                [`MaskedDiffusionPipelineOutput`] instead of the tuple ``(sequences, texts)``.
            callback_on_step_end (`Callable`, [`~diffusers.callbacks.PipelineCallback`], *optional*): called at the
                end of every step as ``callback_on_step_end(self, step, timestep, callback_kwargs)``; may return
                ``{"sequences": ...}`` to replace the current sequences.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["sequences"]`): what ``callback_kwargs``
                holds, among ``"sequences"`` (current token ids) and ``"logits"`` (last denoiser output).

        Examples:
        """
        check_arguments(MaskedDiffusionPipeline.__call__, locals())  # types and finiteness, from the signature
        if mask_token_id is None and self.tokenizer is not None:
            mask_token_id = self.tokenizer.mask_token_id
        if input_ids is None and seq_len is None:
            seq_len = 128
        self.check_inputs(prompt, input_ids, seq_len, num_samples, num_inference_steps, temperature,
                          mask_token_id, output_type)
        if time_input not in TIME_INPUTS:
            raise ValueError(f"`time_input` must be one of {TIME_INPUTS}, got {time_input!r}.")
        if end_token_id is not None and (end_token_id == mask_token_id or not 0 <= end_token_id < (
                getattr(getattr(self.denoiser, "config", None), "vocab_size", None) or end_token_id + 1)):
            raise ValueError(f"`end_token_id` {end_token_id} must be a token of the denoiser's vocabulary other than "
                             "the mask token.")
        callback_inputs = check_callback_inputs(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        device = self._execution_device
        sample = self.prepare_sequences(prompt, input_ids, seq_len, num_samples, mask_token_id, device)
        check_denoiser_inputs(self.denoiser, sample, mask_token_id, "input_ids" if input_ids is not None else "prompt",
                              "input_ids" if input_ids is not None else "seq_len")
        if isinstance(generator, list) and len(generator) != sample.shape[0]:
            raise ValueError(f"`generator` is a list of {len(generator)}; it must hold one per sequence ({sample.shape[0]}).")

        self.scheduler.set_timesteps(num_inference_steps, device=device, num_masked=(sample == mask_token_id).sum(1),
                                     generator=generator)
        time_conditioned = "timesteps" in inspect.signature(self.denoiser.forward).parameters
        forbidden = None
        logits, seen, nfe = None, None, 0
        # the first-hitting sampler plans its steps, each of which unmasks tokens: it runs them all without reading
        # the sequences back on the host (no early-stop check, and its cache could never hit), unless a callback edits
        planned = isinstance(self.scheduler, FirstHittingScheduler) and callback_on_step_end is None
        self._start_steps(self.scheduler.timesteps)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            if self.interrupt or (not planned and not (sample == mask_token_id).any()):
                break
            if logits is None or planned or time_conditioned or not use_cache or not torch.equal(sample, seen):
                logits = self.denoise(sample, t, time_conditioned, time_input)
                seen, nfe = sample, nfe + 1
            if forbidden is None:
                forbidden = self.forbidden_tokens(logits.shape[-1], device)
                if end_token_id is not None:  # variable length: the end token may be generated
                    forbidden[end_token_id] = False
            sample = self.scheduler.step(logits, t, sample, mask_token_id, temperature=temperature,
                                         forbidden_tokens=forbidden, generator=generator).prev_sample
            if callback_on_step_end is not None:
                sample = run_callback(self, callback_on_step_end, i, t, callback_inputs,
                                      {"sequences": sample, "logits": logits})["sequences"]

        texts = self.decode(sample, end_token_id) if output_type == "text" else None
        sequences = sample.cpu().numpy() if output_type == "np" else sample
        self.maybe_free_model_hooks()
        if not return_dict:
            return (sequences, texts)
        return MaskedDiffusionPipelineOutput(sequences=sequences, texts=texts, nfe=nfe)

    def decode(self, sequences, end_token_id: int | None = None) -> list[str]:
        """Texts of ``sequences`` without special tokens, each cut at its first ``end_token_id`` (if given)."""
        rows = sequences.tolist()
        if end_token_id is not None:
            rows = [row[: row.index(end_token_id)] if end_token_id in row else row for row in rows]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    def model_card_kwargs(self):
        """The card's model name, base model (the denoiser's ``_name_or_path``) and sampler settings."""
        config = getattr(self.denoiser, "config", None)
        return {
            "model_name": f"{type(self.denoiser).__name__} masked diffusion model",
            "base_model": getattr(config, "_name_or_path", None) or None,
            "training_config": {"scheduler": type(self.scheduler).__name__, **dict(self.scheduler.config)},
        }
