"""Diffusers conventions shared by hfgen's pipelines and schedulers: step-end callbacks and ``scheduler.compatibles``."""

from __future__ import annotations

import importlib
from typing import Any


class HfgenSchedulerMixin:
    """Put it before ``SchedulerMixin``: ``compatibles`` then resolves ``_compatibles`` names among hfgen's own
    schedulers (``hfgen.pipelines``) as well as Diffusers' (Diffusers looks only in ``diffusers``)."""

    _compatibles: list[str] = []

    @classmethod
    def _get_compatibles(cls) -> list[type]:
        libraries = [importlib.import_module("hfgen.pipelines"), importlib.import_module("diffusers")]
        found = {cls.__name__: cls}
        for name in cls._compatibles:
            for library in libraries:
                if name in getattr(library, "__all__", dir(library)) and hasattr(library, name):
                    found.setdefault(name, getattr(library, name))
                    break
        return list(found.values())


class CallbackStateMixin:
    """What Diffusers' step-end callbacks read from a pipeline during a call: ``num_timesteps`` (the steps of the
    current call) and ``interrupt`` (a callback sets ``pipe._interrupt = True`` to skip the remaining steps; the
    output is then the state reached so far)."""

    _num_timesteps: int | None = None
    _interrupt: bool = False

    @property
    def num_timesteps(self) -> int | None:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def _start_steps(self, timesteps) -> None:
        """Call before the denoising loop (the loop then skips its steps once ``interrupt`` is set)."""
        self._num_timesteps, self._interrupt = len(timesteps), False


def check_callback_inputs(pipe, callback_on_step_end, tensor_inputs: list[str] | None) -> list[str]:
    """Validate Diffusers' ``callback_on_step_end`` / ``callback_on_step_end_tensor_inputs`` arguments (a callable
    ``callback(pipe, step, timestep, callback_kwargs) -> dict``, or a [`~diffusers.callbacks.PipelineCallback`] /
    [`~diffusers.callbacks.MultiPipelineCallbacks`], whose own ``tensor_inputs`` are then used); returns the names."""
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

    if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
        tensor_inputs = callback_on_step_end.tensor_inputs
    tensor_inputs = list(tensor_inputs or [])
    if callback_on_step_end is not None and not callable(callback_on_step_end):
        raise ValueError(f"`callback_on_step_end` must be callable, got {type(callback_on_step_end).__name__}.")
    unknown = [k for k in tensor_inputs if k not in pipe._callback_tensor_inputs]
    if unknown:
        raise ValueError(f"`callback_on_step_end_tensor_inputs` has {unknown}; {type(pipe).__name__} can pass "
                         f"{pipe._callback_tensor_inputs}.")
    return tensor_inputs


def run_callback(pipe, callback_on_step_end, step: int, timestep, tensor_inputs: list[str],
                 values: dict[str, Any]) -> dict[str, Any]:
    """Call the step-end callback with the requested tensors; returns ``values`` updated with what it returned
    (Diffusers' convention: a callback may replace e.g. ``latents``)."""
    if callback_on_step_end is None:
        return values
    outputs = callback_on_step_end(pipe, step, timestep, {k: values[k] for k in tensor_inputs}) or {}
    return {**values, **{k: v for k, v in outputs.items() if k in values}}
