"""Robust extraction of LLMPopcorn's structured plan (title, cover prompt, video prompt) from LLM text.

Order of attempts: drop ``<think>`` blocks (reasoning models) -> the last JSON object in the text
(fenced or bare, keys matched case- and separator-insensitively) that holds all three fields -> the
official parser's fallback, scanning lines backwards for ``"title": "..."`` etc. (with
``re.IGNORECASE``: the official regexes put ``(?i)`` after ``^``, which Python >= 3.11 rejects) ->
refuse an answer that copied the prompt's example title (the official code blanks such rows).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from .prompts import EXAMPLE_PLAN

PLAN_FIELDS = ("title", "cover_prompt", "video_prompt")


class PopcornStageError(ValueError):
    """A failure of one pipeline stage (``query``, ``retrieval``, ``llm``, ``plan``, ``cover``, ``video``,
    ``popularity``); the message starts with the stage, ``raw_outputs`` keeps the LLM's answers."""

    def __init__(self, stage: str, message: str, raw_outputs: list[str] | None = None):
        super().__init__(f"[{stage} stage] {message}")
        self.stage = stage
        self.raw_outputs = list(raw_outputs or [])


@dataclass
class PopcornPlan:
    title: str
    cover_prompt: str
    video_prompt: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _norm(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower())


_FIELD_OF = {_norm(f): f for f in PLAN_FIELDS} | {"cover": "cover_prompt", "video": "video_prompt"}


def _json_objects(text: str):
    """Every decodable JSON object in ``text`` (from each ``{``), in order of appearance."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            yield obj


def _fields(obj: dict) -> dict[str, str]:
    out = {}
    for key, value in obj.items():
        field = _FIELD_OF.get(_norm(str(key)))
        if field and isinstance(value, str) and value.strip():
            out[field] = value.strip()
        elif isinstance(value, dict):  # {"answer": {...}} wrappers
            out = {**_fields(value), **out}
    return out


def _line_fallback(text: str) -> dict[str, str]:
    found = {}
    for line in reversed(text.splitlines()):
        for field in PLAN_FIELDS:
            pattern = r'^\W*"?' + "_?".join(field.replace("_", "")) + r'"?\s*[:=]\s*"(.*?)"\s*,?\s*$'
            m = re.match(pattern, line.strip(), flags=re.IGNORECASE)
            if field not in found and m and m.group(1).strip():
                found[field] = m.group(1).strip()
    return found


def parse_plan(text: str) -> PopcornPlan:
    """The plan in an LLM answer; raises [`PopcornStageError`] (stage ``plan``) naming what is missing."""
    if not isinstance(text, str) or not text.strip():
        raise PopcornStageError("plan", "the LLM answer is empty.")
    body = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    best: dict[str, str] = {}
    for obj in _json_objects(body):
        fields = _fields(obj)
        if len(fields) >= len(best):  # the last most complete object wins (answers follow reasoning)
            best = fields
    if len(best) < len(PLAN_FIELDS):
        best = {**_line_fallback(body), **best}
    missing = [f for f in PLAN_FIELDS if f not in best]
    if missing:
        raise PopcornStageError("plan", f"the LLM answer lacks the field(s) {missing} (expected a JSON object with "
                                        f"{list(PLAN_FIELDS)}); answer starts with {text.strip()[:120]!r}.")
    if best["title"].strip().lower() == EXAMPLE_PLAN["title"].lower():
        raise PopcornStageError("plan", "the LLM copied the prompt's example plan instead of answering the query.")
    return PopcornPlan(**{f: best[f] for f in PLAN_FIELDS})
