"""What every converter shares: reading a released checkpoint safely, accounting for every tensor, saving atomically.

- [`read_checkpoint`] reads safetensors, or a pickle only through ``torch.load(weights_only=True)``
  (tensors and plain containers; anything else is refused, never unpickled);
- [`KeyMapper`] hands out source tensors by name and refuses a state dict with a tensor that no rule
  consumed, or a rule whose tensor is absent, naming the keys;
- [`save_converted`] writes ``save_pretrained``'s safetensors folder and a card naming the source
  through [`hfgen.hub.atomic_save_dir`] (all or nothing);
- [`finish_conversion`], every converter's tail: refuse leftovers, load strictly, cast, eval, save with a card.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hfgen.convert.errors import ConversionError

SAFETENSORS_SUFFIX = ".safetensors"
# checkpoints a converter reads with torch.load(weights_only=True) (hfgen.hub.PICKLE_SUFFIXES: every pickle it refuses)
TORCH_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _unpickler_reason(err: Exception) -> str:
    """The line of torch's weights_only error that names what was refused (its first line only says it failed)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    reason = next((line for line in lines if "Unsupported" in line or "WeightsUnpickler" in line), lines[0] if lines else "")
    return reason.split(" Please use ")[0]


def _load_pickle(path: Path, safe_globals: tuple[type, ...] = ()) -> Any:
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses any global that is not a tensor or plain container
        raise ConversionError(
            f"{path} cannot be read with torch.load(weights_only=True): {_unpickler_reason(err)} "
            "hfgen never unpickles arbitrary objects (it can run code). Re-save the tensors alone where the "
            "original code is installed, e.g. `safetensors.torch.save_file(ckpt['state_dict'], 'model.safetensors')`, "
            "and convert that file."
        ) from None


def read_checkpoint(source: str | os.PathLike, safe_globals: tuple[type, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read ``source`` (a file, or a folder holding one weights file) into ``(checkpoint, config)``.

    ``checkpoint`` is a dict: a flat ``name -> tensor`` state dict for safetensors, or whatever dict
    ``torch.load(weights_only=True)`` returns (e.g. a Lightning checkpoint ``{"state_dict": ..., "ema": ...}``).
    ``config`` is the folder's ``config.json`` when there is one, else ``{}``. Sharded safetensors in a folder
    are merged. ``safe_globals``: plain-data classes a converter's source format pickles besides tensors (added to
    ``weights_only``'s allowlist for this read only).
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"`source` {str(source)!r} does not exist.")
    config: dict[str, Any] = {}
    if path.is_dir():
        if (path / "config.json").is_file():
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        safe = sorted(p for p in path.iterdir() if p.name.endswith(SAFETENSORS_SUFFIX))
        pickled = sorted(p for p in path.iterdir() if p.suffix in TORCH_CHECKPOINT_SUFFIXES and p.name != "training_args.bin")
        if safe:
            files = safe
        elif len(pickled) == 1:
            files = pickled
        else:
            raise FileNotFoundError(f"`source` {str(source)!r} holds no .safetensors file and not exactly one of "
                                    f"{', '.join(TORCH_CHECKPOINT_SUFFIXES)} (found {[p.name for p in pickled]}).")
    else:
        files = [path]
    checkpoint: dict[str, Any] = {}
    for file in files:
        if file.name.endswith(SAFETENSORS_SUFFIX):
            from safetensors.torch import load_file

            checkpoint.update(load_file(str(file)))
        elif file.suffix in TORCH_CHECKPOINT_SUFFIXES:
            loaded = _load_pickle(file, safe_globals)
            if not isinstance(loaded, Mapping):
                raise ConversionError(f"{file} holds a {type(loaded).__name__}, not a dict of tensors.")
            checkpoint.update(loaded)
        else:
            raise ConversionError(f"`source` {str(file)!r}: expected a .safetensors file or a torch checkpoint "
                                  f"({', '.join(TORCH_CHECKPOINT_SUFFIXES)}).")
    return checkpoint, config


def tensors_only(state: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    """Check that ``state`` maps names to tensors; ``where`` names it in the error."""
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"{where} is not a state dict of tensors: {', '.join(map(str, bad[:5]))} "
                              f"{'...' if len(bad) > 5 else ''}are not tensors.")
    return dict(state)


def strip_prefix(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Remove the first of ``prefixes`` that every key carries (e.g. Lightning's ``backbone.``)."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


class KeyMapper:
    """Hands out the tensors of a source state dict; [`finish`] refuses leftovers and absences.

    Args:
        state: the source state dict.
        what: a name for it in error messages, e.g. ``"the MDLM checkpoint"``.
    """

    def __init__(self, state: Mapping[str, torch.Tensor], what: str):
        self.state = dict(state)
        self.what = what
        self.used: set[str] = set()
        self.missing: list[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self.state

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor | None:
        """The tensor ``key`` (recorded as used); a missing key is recorded and reported by [`finish`]."""
        if key not in self.state:
            self.missing.append(key)
            return None
        tensor = self.state[key]
        if shape is not None and tuple(tensor.shape) != tuple(shape):
            raise ConversionError(f"{self.what}: tensor {key!r} has shape {tuple(tensor.shape)}, expected {tuple(shape)}.")
        self.used.add(key)
        return tensor

    def finish(self) -> None:
        unmapped = sorted(set(self.state) - self.used)
        def names(keys, limit=20):
            return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")

        problems = []
        if self.missing:
            problems.append(f"missing tensors: {names(list(dict.fromkeys(self.missing)))}")
        if unmapped:
            problems.append(f"unmapped tensors (not part of the architecture this converter knows): {names(unmapped)}")
        if problems:
            raise ConversionError(f"{self.what} does not match the expected architecture; " + "; ".join(problems) + ".")


def load_converted(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict(strict=True)`` with the target's dtype; a mismatch is a [`ConversionError`]."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ConversionError(f"converted state dict does not fit {type(model).__name__}: missing {missing}, unexpected {extra}.")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ConversionError(f"converted tensor {key!r} has shape {tuple(value.shape)}, {type(model).__name__} "
                                  f"expects {tuple(expected[key].shape)}.")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def conversion_card(kind: str, source: str, cls_name: str, usage: str, method: str | None = None,
                    notes: str = "", card_vars: dict | None = None, license: str = "unknown",
                    license_source: str = "") -> str:
    """A model card naming the source checkpoint and the converter (hfgen metadata when ``method`` is given;
    ``card_vars`` are the method card template's variables, e.g. ``{"kind": "dit"}``). ``license`` is the
    upstream checkpoint's licence (a Hub licence id; converted weights keep their source's licence, not hfgen's),
    ``license_source`` where that fact was read."""
    body = (f"\n## Converted checkpoint\n\nConverted with `hfgen convert {kind}` from `{source}` into "
            f"`{cls_name}`. Every source tensor was mapped (the converter refuses unmapped or missing tensors); "
            f"the conversion is checked against the official network's recorded outputs on random weights "
            f"(hfgen's parity tests).\n{notes}\n\n**Licence:** `{license}`, the upstream checkpoint's"
            f"{f' ({license_source})' if license_source else ''}.\n\n```python\n{usage.strip()}\n```\n")
    if method is None:
        return (f"---\nlibrary_name: hfgen\nlicense: {license}\ntags:\n- hfgen\n- hfgen-converted\n---\n\n"
                f"# {cls_name} (converted)\n{body}")
    from hfgen.hub import render_model_card

    card = render_model_card(method, model_name=f"{cls_name} converted from {source}", extra_tags=["hfgen-converted"],
                             license=license, **(card_vars or {}))
    return str(card) + body


def save_converted(model, output: str | os.PathLike, card: str) -> Path:
    """Write ``model.save_pretrained`` (safetensors) and ``README.md`` into ``output`` atomically."""
    from hfgen.hub import atomic_save_dir

    with atomic_save_dir(output) as tmp:
        model.save_pretrained(tmp)  # transformers and Diffusers models save safetensors by default
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return Path(output)


def finish_conversion(model, state: dict[str, torch.Tensor], *, torch_dtype: torch.dtype, output, kind: str,
                      source, usage: str, method: str | None, notes: str = "", mapper: KeyMapper | None = None,
                      card_vars: dict | None = None, license: str = "unknown", license_source: str = ""):
    """The tail every converter shares: ``mapper.finish()`` (refuse leftover or missing tensors) when given,
    [`load_converted`], cast to ``torch_dtype``, eval mode, and with ``output`` [`save_converted`] with the card of
    [`conversion_card`] (``usage``: the code that loads the saved folder; ``card_vars``: the method card's template
    variables; ``license``, ``license_source``: the upstream checkpoint's licence and where it is stated). Returns
    the model."""
    if mapper is not None:
        mapper.finish()
    load_converted(model, state)
    model = (model if torch_dtype == torch.float32 else model.to(torch_dtype)).eval()
    if output is not None:
        save_converted(model, output, conversion_card(kind, str(source), type(model).__name__, usage, method=method,
                                                      notes=notes, card_vars=card_vars, license=license,
                                                      license_source=license_source))
    return model
