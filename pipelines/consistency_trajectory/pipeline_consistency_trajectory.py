"""Unconditional few-step sampling with a consistency trajectory model (CTM / Analytic-Precond students)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ModelMixin, UNet2DModel
from diffusers.utils import BaseOutput, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from hfgen.hub import HfgenPipelineMixin
from hfgen.validation import check_arguments, check_finite

from ..utils import CallbackStateMixin, check_callback_inputs, run_callback
from .modeling_trajectory_mlp import TrajectoryMLP
from .scheduling_consistency_trajectory import ConsistencyTrajectoryScheduler

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from hfgen.pipelines import ConsistencyTrajectoryPipeline, ConsistencyTrajectoryScheduler
        >>> from hfgen.pipelines.consistency_trajectory.modeling_trajectory_mlp import TrajectoryMLP

        >>> pipe = ConsistencyTrajectoryPipeline(TrajectoryMLP(dim=2), ConsistencyTrajectoryScheduler())
        >>> out = pipe(batch_size=8, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
        >>> out.samples.shape, out.nfe
        (torch.Size([8, 2]), 2)
        ```
"""


@dataclass
class ConsistencyTrajectoryPipelineOutput(BaseOutput):
    """
    Args:
        samples (`torch.Tensor`, `np.ndarray` or `list[PIL.Image.Image]`): the samples (images in [0, 1]
            for a UNet student with `"np"`/`"pil"`; raw data for `"pt"` and for vector students).
        nfe (`int`): network evaluations used per sample.
    """

    samples: torch.Tensor | np.ndarray | list[PIL.Image.Image]
    nfe: int


def trajectory_network(
    model: ModelMixin, model_input: torch.Tensor, c_t: torch.Tensor, c_s: torch.Tensor
) -> torch.Tensor:
    """Raw student output ``F(c_in x, c_noise(t), c_noise(s))``: a [`TrajectoryMLP`], or a [`UNet2DModel`]
    built with ``class_embed_type="timestep"`` that receives ``c_noise(s)`` as its class label.

    A half-precision UNet runs under autocast: Diffusers embeds its class label in float32 and feeds that to a
    half-precision layer."""
    batch = model_input.shape[0]
    c_t, c_s = c_t.to(model_input.device).expand(batch), c_s.to(model_input.device).expand(batch)
    if isinstance(model, UNet2DModel):
        half = model.dtype in (torch.float16, torch.bfloat16)
        with torch.autocast(model_input.device.type, dtype=model.dtype, enabled=half):
            return model(model_input.to(model.dtype), c_t, class_labels=c_s).sample.to(model.dtype)
    return model(model_input, c_t, c_s).sample


class ConsistencyTrajectoryPipeline(HfgenPipelineMixin, CallbackStateMixin, DiffusionPipeline):
    r"""Sample ``x_0`` from noise ``x_T ~ N(0, sigma_max^2 I)`` with a trajectory student ``G(x_t, t, s)``
    in ``num_inference_steps`` jumps (one network call each), optionally re-noising by ``gamma`` (CTM).

    Args:
        denoiser ([`TrajectoryMLP`] or [`UNet2DModel`]): the student network ``F`` (see [`trajectory_network`]).
        scheduler ([`ConsistencyTrajectoryScheduler`]): grid, preconditioning (and its teacher statistics), gamma.
    """

    model_cpu_offload_seq = "denoiser"
    _callback_tensor_inputs = ["latents"]

    def __init__(self, denoiser: TrajectoryMLP | UNet2DModel, scheduler: ConsistencyTrajectoryScheduler):
        super().__init__()
        self.register_modules(denoiser=denoiser, scheduler=scheduler)

    def model_card_kwargs(self):
        """The card names the scheduler's preconditioning."""
        return {"preconditioning": self.scheduler.config.preconditioning}

    def sample_shape(self, batch_size: int) -> tuple:
        config = self.denoiser.config
        if isinstance(self.denoiser, UNet2DModel):
            size = config.sample_size
            size = (size, size) if isinstance(size, int) else tuple(size)
            return (batch_size, config.out_channels, *size)
        return (batch_size, config.dim)

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 2,
        gamma: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (Diffusers' signature)
    ) -> ConsistencyTrajectoryPipelineOutput | tuple:
        r"""
        Args:
            batch_size (`int`, defaults to 1): number of samples.
            num_inference_steps (`int`, defaults to 2): jumps, i.e. network evaluations.
            gamma (`float`, *optional*): re-noising strength in [0, 1]; defaults to the scheduler's.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): one, or one per sample.
            latents (`torch.Tensor`, *optional*): the initial noise ``x_T`` (else drawn, ``sigma_max`` times N(0, I)).
            output_type (`str`, defaults to `"pt"`): `"pt"` or `"latent"` (the samples as they are, a tensor),
                `"np"`, or (UNet students) `"pil"`.
            return_dict (`bool`, defaults to `True`): return a [`ConsistencyTrajectoryPipelineOutput`].
            callback_on_step_end (`Callable`, [`~diffusers.callbacks.PipelineCallback`], *optional*): called after
                every jump as ``callback_on_step_end(self, step, timestep, callback_kwargs)``; may return
                ``{"latents": ...}`` to replace the current sample.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): what ``callback_kwargs`` holds.

        Examples:

        Returns:
            [`ConsistencyTrajectoryPipelineOutput`] or `tuple`: samples and the number of network evaluations.
        """
        check_arguments(ConsistencyTrajectoryPipeline.__call__, locals())  # types and finiteness, from the signature
        check_finite("latents", latents)
        if output_type not in ("pt", "np", "pil", "latent") or (
            output_type == "pil" and not isinstance(self.denoiser, UNet2DModel)
        ):
            raise ValueError(f"`output_type` must be 'pt', 'latent' or 'np' ('pil' for UNet students), got "
                             f"{output_type!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"Got {len(generator)} generators for `batch_size` {batch_size}.")
        callback_inputs = check_callback_inputs(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        device = self._execution_device
        shape = self.sample_shape(batch_size)
        if latents is not None and tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
        self.scheduler.set_timesteps(num_inference_steps, device=device, gamma=gamma)
        noise = (
            latents
            if latents is not None
            else randn_tensor(shape, generator=generator, device=device, dtype=self.denoiser.dtype)
        )
        sample = noise.to(device=device, dtype=self.denoiser.dtype) * self.scheduler.init_noise_sigma

        self._start_steps(self.scheduler.timesteps)
        for i, (t, s) in enumerate(self.progress_bar(list(zip(self.scheduler.timesteps, self.scheduler.targets)))):
            if self.interrupt:
                continue
            model_input = self.scheduler.scale_model_input(sample, t)
            model_output = trajectory_network(
                self.denoiser, model_input, self.scheduler.c_noise(t), self.scheduler.c_noise(s)
            )
            sample = self.scheduler.step(model_output, t, sample, generator=generator).prev_sample
            if callback_on_step_end is not None:
                sample = run_callback(self, callback_on_step_end, i, t, callback_inputs, {"latents": sample})["latents"]

        if output_type in ("pt", "latent"):  # the samples as they are
            samples = sample
        elif isinstance(self.denoiser, UNet2DModel):
            samples = (sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
            samples = self.numpy_to_pil(samples) if output_type == "pil" else samples
        else:
            samples = sample.float().cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (samples, num_inference_steps)
        return ConsistencyTrajectoryPipelineOutput(samples=samples, nfe=num_inference_steps)
