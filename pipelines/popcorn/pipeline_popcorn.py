"""LLMPopcorn: an LLM plans a popular micro-video (title, cover prompt, video prompt), Diffusers makes it,
an MMRA-style model predicts its popularity."""

from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput, replace_example_docstring

from hfgen.hub import HfgenPipelineMixin

from .parsing import PopcornPlan, PopcornStageError, parse_plan
from .prompts import build_messages

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from hfgen.data.microlens import make_synthetic_microlens
        >>> from hfgen.pipelines import PopcornPipeline
        >>> from hfgen.pipelines.popcorn import PopularityRetriever, TransformersLLM
        >>> from hfgen.testing.scripted_lm import ExtractiveLM, ExtractiveLMConfig, byte_tokenizer
        >>> from hfgen.testing.tiny_models import tiny_text_to_video

        >>> tok = byte_tokenizer()
        >>> llm = TransformersLLM(ExtractiveLM(ExtractiveLMConfig()), tok, do_sample=False, max_new_tokens=400)
        >>> table = make_synthetic_microlens(60, with_media=False)
        >>> pipe = PopcornPipeline(llm=llm, text_to_video=tiny_text_to_video(tok), retriever=PopularityRetriever(table, "tfidf"))
        >>> out = pipe("Show a kitten's first day at home", use_retrieval=True, use_chain_of_thought=True,
        ...            height=32, width=32, num_frames=9, num_inference_steps=2, video_kwargs={"max_sequence_length": 16})
        >>> len(out.videos[0]), len(out.raw_llm_outputs[0]), "kitten's" in out.plans[0].title
        (9, 1, True)
        ```
"""

_MEDIA_INPUTS = ("image", "video", "control_image", "control_video", "mask_image")


def _check_generator(name: str, pipe, video: bool) -> None:
    """A text-to-image pipeline takes a ``prompt`` and no ``num_frames``; a text-to-video one takes both;
    neither takes an image or video input."""
    if pipe is None:
        return
    stage, kind = ("video", "text-to-video") if video else ("cover", "text-to-image")
    if not isinstance(pipe, DiffusionPipeline):
        raise PopcornStageError(stage, f"`{name}` must be a Diffusers {kind} pipeline, got {type(pipe).__name__}.")
    params = inspect.signature(pipe.__call__).parameters
    media = [p for p in _MEDIA_INPUTS if p in params]
    problem = ("it takes no `prompt`" if "prompt" not in params else
               f"it takes {media} as input" if media else
               "its __call__ has no `num_frames` (it makes images)" if video and "num_frames" not in params else
               "its __call__ takes `num_frames` (it makes videos)" if not video and "num_frames" in params else None)
    if problem:
        raise PopcornStageError(stage, f"`{name}` must be a Diffusers {kind} pipeline; {type(pipe).__name__} is not: {problem}.")


@dataclass
class PopcornPipelineOutput(BaseOutput):
    """
    Args:
        plans (`list[PopcornPlan]`): title, cover prompt and video prompt per query.
        covers (`list[PIL.Image.Image]` or `np.ndarray`): one cover per query (``None`` without a text-to-image pipeline).
        videos (`list[list[PIL.Image.Image]]` or `np.ndarray`): frames per query, ``[B, F, H, W, 3]`` in [0, 1] for
            ``"np"`` (``None`` without a text-to-video pipeline).
        popularity (`np.ndarray`): predicted ``log2(1 + comments)`` per query (``None`` without a popularity model).
        raw_llm_outputs (`list[list[str]]`): the LLM's raw answers per query, every attempt.
        messages (`list[list[dict]]`): the chat messages sent per query.
    """

    plans: list[PopcornPlan]
    covers: list[PIL.Image.Image] | np.ndarray | None
    videos: list[list[PIL.Image.Image]] | np.ndarray | None
    popularity: np.ndarray | None
    raw_llm_outputs: list[list[str]]
    messages: list[list[dict[str, str]]]


class PopcornPipeline(HfgenPipelineMixin, DiffusionPipeline):
    r"""LLMPopcorn (arXiv 2502.12945): LLM-assisted popular micro-video generation.

    ``query -> [retrieval of popular / unpopular references] -> [chain-of-thought prompt] -> LLM -> plan
    (title, cover prompt, video prompt) -> text-to-image cover, text-to-video clip -> popularity``.
    Every stage is a component and can be replaced; a missing generator or popularity model skips its
    stage. A failure raises [`PopcornStageError`] naming the stage.

    Args:
        llm: an LLM backend, any object with ``generate(messages) -> str``
            ([`TransformersLLM`], [`OpenAIChatLLM`]).
        text_to_image ([`DiffusionPipeline`], *optional*): the cover generator (Stable Diffusion in the paper),
            or a ``from_pretrained`` id.
        text_to_video ([`DiffusionPipeline`], *optional*): the clip generator (LTX-Video, CogVideoX, HunyuanVideo,
            Wan ...), or a ``from_pretrained`` id.
        popularity_model ([`PopularityModel`], *optional*): the MMRA-style popularity regressor.
        popularity_tokenizer (*optional*): the regressor's title tokenizer.
        retriever ([`PopularityRetriever`], *optional*): the MicroLens-style table for the references (and
            MMRA's neighbours when ``popularity_model.config.num_retrieved > 0``).
    """

    # `llm` is listed so that a saved pipeline (which cannot store it) loads as far as __init__, whose check
    # then asks for it by name; it is required all the same.
    _optional_components = ["llm", "text_to_image", "text_to_video", "popularity_model", "popularity_tokenizer", "retriever"]

    def __init__(self, llm, text_to_image=None, text_to_video=None, popularity_model=None, popularity_tokenizer=None,
                 retriever=None):
        super().__init__()
        if llm is None or not callable(getattr(llm, "generate", None)):
            raise PopcornStageError("llm", f"`llm` must have a `generate(messages) -> str` method, got {type(llm).__name__} "
                                           "(a saved pipeline does not store its LLM: pass `llm=` to from_pretrained).")
        text_to_image = DiffusionPipeline.from_pretrained(text_to_image) if isinstance(text_to_image, str) else text_to_image
        text_to_video = DiffusionPipeline.from_pretrained(text_to_video) if isinstance(text_to_video, str) else text_to_video
        _check_generator("text_to_image", text_to_image, video=False)
        _check_generator("text_to_video", text_to_video, video=True)
        if (popularity_model is None) != (popularity_tokenizer is None):
            raise PopcornStageError("popularity", "`popularity_model` and `popularity_tokenizer` go together.")
        self.register_modules(llm=llm, text_to_image=text_to_image, text_to_video=text_to_video,
                              popularity_model=popularity_model, popularity_tokenizer=popularity_tokenizer,
                              retriever=retriever)

    # the step-end callback is passed on to the cover / video generators, which hold the tensors
    _callback_tensor_inputs: list[str] = []

    def to(self, *args, **kwargs):
        """Diffusers' ``to`` (device / dtype), also applied to the generator pipelines, which are components."""
        super().to(*args, **kwargs)
        for pipe in (self.text_to_image, self.text_to_video):
            if pipe is not None:
                pipe.to(*args, **kwargs)
        return self

    def set_progress_bar_config(self, **kwargs):
        super().set_progress_bar_config(**kwargs)
        for pipe in (self.text_to_image, self.text_to_video):
            if pipe is not None:
                pipe.set_progress_bar_config(**kwargs)

    # save_pretrained (HfgenPipelineMixin) saves the generators, the popularity model and its tokenizer (Diffusers
    # layout) and the model card. The LLM backend and the retriever hold no weights of their own and are not
    # saved: pass them again to ``from_pretrained(path, llm=..., retriever=...)``.

    def check_inputs(self, queries, use_retrieval, num_references, max_retries, output_type, generator):
        if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise PopcornStageError("query", f"`query` must be a non-empty string or a list of them, got {queries!r}.")
        if use_retrieval and self.retriever is None:
            raise PopcornStageError("retrieval", "`use_retrieval=True` needs a `retriever` (a PopularityRetriever over "
                                                 "a MicroLens-style table).")
        for name, value in (("num_references", num_references), ("max_retries", max_retries)):
            if isinstance(value, bool) or not isinstance(value, int):  # 2.5 would slice a table, NaN pass `< 1`
                raise TypeError(f"`{name}` must be an integer, got {type(value).__name__} {value!r}.")
        if num_references < 1:
            raise ValueError(f"`num_references` must be >= 1, got {num_references}.")
        if max_retries < 0:
            raise ValueError(f"`max_retries` must be >= 0, got {max_retries}.")
        if output_type not in ("pil", "np"):
            raise ValueError(f"`output_type` must be 'pil' or 'np', got {output_type!r}.")
        if isinstance(generator, list) and len(generator) != len(queries):
            raise ValueError(f"`generator` is a list of {len(generator)}; it must have one generator per query ({len(queries)}).")
        if self.popularity_model is not None and (self.text_to_image is None or self.text_to_video is None):
            raise PopcornStageError("popularity", "the popularity model scores a cover and frames: give both "
                                                  "`text_to_image` and `text_to_video`.")
        if self.popularity_model is not None and self.popularity_model.config.num_retrieved:
            if self.retriever is None or not {"cover", "frames"} <= set(self.retriever.table.column_names):
                raise PopcornStageError("popularity", "the popularity model retrieves neighbours: `retriever` must hold a "
                                                      "table with `cover` and `frames` columns.")

    def build_messages(self, query: str, use_retrieval: bool = False, use_chain_of_thought: bool = False,
                       num_references: int = 10) -> list[dict[str, str]]:
        """The basic or enhanced (references and / or reasoning chain) chat messages for ``query``."""
        positives = negatives = None
        if use_retrieval:
            positives, negatives = self.retriever.references(query, num_references)
        return build_messages(query, positives, negatives, chain_of_thought=use_chain_of_thought)

    def generate_plan(self, messages: list[dict[str, str]], max_retries: int = 2, **llm_kwargs) -> tuple[PopcornPlan, list[str]]:
        """Ask the LLM until its answer parses (``1 + max_retries`` attempts); returns the plan and every raw answer."""
        raw: list[str] = []
        error: PopcornStageError | None = None
        for _ in range(max_retries + 1):
            try:
                text = self.llm.generate(messages, **llm_kwargs)
            except PopcornStageError as err:
                err.raw_outputs = raw
                raise
            except Exception as err:
                raise PopcornStageError("llm", f"the LLM backend failed: {type(err).__name__}: {err}", raw) from err
            raw.append(text)
            try:
                return parse_plan(text), raw
            except PopcornStageError as err:
                error = err
        raise PopcornStageError("plan", f"no valid plan after {max_retries + 1} attempt(s); last problem: "
                                        f"{str(error).removeprefix('[plan stage] ')} The raw answers are in `.raw_outputs`.", raw)

    @staticmethod
    def _call(pipe, stage: str, **kwargs):
        params = inspect.signature(pipe.__call__).parameters
        kwargs = {k: v for k, v in kwargs.items() if v is not None and k in params}
        try:
            return pipe(**kwargs)
        except Exception as err:
            raise PopcornStageError(stage, f"{type(pipe).__name__} failed: {type(err).__name__}: {err}") from err

    @torch.no_grad()
    def score(self, plans: list[PopcornPlan], covers: list, videos: list) -> np.ndarray:
        """Predicted ``log2(1 + comments)`` of generated videos (title, cover and frames)."""
        from .modeling_popularity import PopularityCollator

        model = self.popularity_model
        rows = [{"title_en": p.title, "caption_en": p.video_prompt, "cover": c, "frames": list(v)}
                for p, c, v in zip(plans, covers, videos)]
        try:
            batch = PopularityCollator(self.popularity_tokenizer, model.config, memory=self.retriever)(rows)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            return model(**batch).logits.float().cpu().numpy()
        except PopcornStageError:
            raise
        except Exception as err:
            raise PopcornStageError("popularity", f"{type(model).__name__} failed: {type(err).__name__}: {err}") from err

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        query: str | list[str],
        use_retrieval: bool = False,
        use_chain_of_thought: bool = False,
        num_references: int = 10,
        max_retries: int = 2,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | None = "worst quality, inconsistent motion, blurry, jittery, distorted",
        generator: torch.Generator | list[torch.Generator] | None = None,
        llm_kwargs: dict[str, Any] | None = None,
        cover_kwargs: dict[str, Any] | None = None,
        video_kwargs: dict[str, Any] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> PopcornPipelineOutput | tuple:
        r"""
        Plan, generate and score a micro-video for each query.

        Args:
            query (`str` or `list[str]`): the user's request(s), e.g. "Discuss the influence of anime on pop culture."
            use_retrieval (`bool`): add the closest popular and unpopular reference videos to the prompt (RAG).
            use_chain_of_thought (`bool`): add LLMPopcorn's seven-step reasoning chain to the prompt (CoT).
            num_references (`int`): reference videos per query (LLMPopcorn: 10, 50 or 100; 10 % unpopular).
            max_retries (`int`): extra LLM calls when an answer has no valid plan.
            height, width, num_frames, num_inference_steps, guidance_scale, negative_prompt: passed to the
                generators that take them (their defaults otherwise; the negative prompt is LLMPopcorn's for LTX).
            generator (`torch.Generator` or `list[torch.Generator]`): one, or one per query.
            llm_kwargs, cover_kwargs, video_kwargs (`dict`): extra arguments of each stage.
            output_type (`str`): `"pil"` or `"np"` covers and frames.
            return_dict (`bool`): return a [`PopcornPipelineOutput`] instead of a tuple.
            callback_on_step_end, callback_on_step_end_tensor_inputs: Diffusers' step-end callback, passed to the
                cover and video generators (the callback receives the generator pipeline and its tensors, e.g.
                ``latents``); the planning and scoring stages have no denoising steps.

        Examples:

        Returns:
            [`PopcornPipelineOutput`] or `tuple` (plans, covers, videos, popularity, raw_llm_outputs, messages).
        """
        if not isinstance(query, (str, list, tuple)):
            raise PopcornStageError("query", f"`query` must be a string or a list of strings, got {query!r}.")
        queries = [query] if isinstance(query, str) else list(query)
        self.check_inputs(queries, use_retrieval, num_references, max_retries, output_type, generator)
        plans, raws, all_messages, covers, videos = [], [], [], [], []
        for i, q in enumerate(self.progress_bar(queries)):
            g = generator[i] if isinstance(generator, list) else generator
            messages = self.build_messages(q.strip(), use_retrieval, use_chain_of_thought, num_references)
            plan, raw = self.generate_plan(messages, max_retries, **(llm_kwargs or {}))
            plans.append(plan)
            raws.append(raw)
            all_messages.append(messages)
            common = dict(height=height, width=width, num_inference_steps=num_inference_steps,
                          guidance_scale=guidance_scale, negative_prompt=negative_prompt, generator=g,
                          callback_on_step_end=callback_on_step_end,
                          callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
            if self.text_to_image is not None:
                out = self._call(self.text_to_image, "cover", prompt=plan.cover_prompt, output_type="pil",
                                 **{**common, "negative_prompt": None}, **(cover_kwargs or {}))
                covers.append(out.images[0])
            if self.text_to_video is not None:
                out = self._call(self.text_to_video, "video", prompt=plan.video_prompt, num_frames=num_frames,
                                 output_type="np", **common, **(video_kwargs or {}))
                frames = out.frames[0]
                videos.append(np.stack([np.asarray(f, dtype=np.float32) / 255.0 for f in frames])
                              if isinstance(frames[0], PIL.Image.Image) else np.asarray(frames, dtype=np.float32))
        popularity = None
        if self.popularity_model is not None:
            popularity = self.score(plans, covers, videos)
        if output_type == "np":
            covers_out = np.stack([np.asarray(c, dtype=np.float32) / 255.0 for c in covers]) if covers else None
            videos_out = np.stack(videos) if videos else None
        else:
            covers_out = covers or None
            videos_out = [[PIL.Image.fromarray((f * 255).round().astype(np.uint8)) for f in v] for v in videos] or None
        self.maybe_free_model_hooks()
        if not return_dict:
            return plans, covers_out, videos_out, popularity, raws, all_messages
        return PopcornPipelineOutput(plans=plans, covers=covers_out, videos=videos_out, popularity=popularity,
                                     raw_llm_outputs=raws, messages=all_messages)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "query"


def save_popcorn_outputs(output: PopcornPipelineOutput, queries: str | list[str], output_dir: str | os.PathLike,
                         fps: int = 8, settings: dict | None = None) -> list[Path]:
    """Write ``plan.json`` (plan, raw LLM answers, messages, score), ``cover.png``, ``video.mp4`` (Diffusers'
    ``export_to_video``) and ``score.json`` per query: into ``output_dir`` for one query, else one sub-folder each."""
    from diffusers.utils import export_to_video

    queries = [queries] if isinstance(queries, str) else list(queries)
    output_dir = Path(output_dir)
    folders = []
    for i, q in enumerate(queries):
        folder = output_dir if len(queries) == 1 else output_dir / f"{i:03d}_{_slug(q)}"
        folder.mkdir(parents=True, exist_ok=True)
        score = None if output.popularity is None else float(output.popularity[i])
        record = {"query": q, "plan": output.plans[i].to_dict(), "raw_llm_outputs": output.raw_llm_outputs[i],
                  "messages": output.messages[i], "predicted_log2_comments": score, "settings": settings or {}}
        (folder / "plan.json").write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        if output.covers is not None:
            cover = output.covers[i]
            cover = cover if isinstance(cover, PIL.Image.Image) else PIL.Image.fromarray((np.asarray(cover) * 255).round().astype(np.uint8))
            cover.save(folder / "cover.png")
        if output.videos is not None:
            frames = output.videos[i]
            frames = list(frames) if isinstance(frames, np.ndarray) else [np.asarray(f, dtype=np.float32) / 255.0 for f in frames]
            export_to_video(frames, str(folder / "video.mp4"), fps=fps)
        if score is not None:
            (folder / "score.json").write_text(json.dumps({"predicted_log2_comments": score,
                                                           "predicted_comments": 2.0 ** score - 1.0}, indent=2))
        folders.append(folder)
    return folders
