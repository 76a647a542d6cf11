from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from hfgen.pipelines import HfgenPipelineMixin


@dataclass
class ToyFlowPipelineOutput(BaseOutput):
    """Output of [`ToyFlowPipeline`].

    Args:
        points (`torch.Tensor` or `np.ndarray`): the samples, of shape ``(num_points, dim)``.
    """

    points: torch.Tensor | np.ndarray


class ToyFlowPipeline(HfgenPipelineMixin, DiffusionPipeline):
    """Sample 2-D points by integrating a learned velocity field from noise (``t = 1``) to data (``t = 0``).

    Args:
        model: the velocity model, called as ``model(sample, t)`` with ``t`` in [0, 1] (e.g. a [`ToyFlowModel`]).
        scheduler ([`~diffusers.FlowMatchEulerDiscreteScheduler`]): the Euler steps of the flow.
    """

    model_cpu_offload_seq = "model"
    _callback_tensor_inputs = ["latents"]

    def __init__(self, model: torch.nn.Module, scheduler: FlowMatchEulerDiscreteScheduler):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, num_points: int = 256, num_inference_steps: int = 20,
                 generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pt", return_dict: bool = True, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: list[str] = ("latents",)) -> ToyFlowPipelineOutput | tuple:
        """Draw ``num_points`` samples with ``num_inference_steps`` Euler steps.

        Args:
            num_points (`int`): how many points to sample.
            num_inference_steps (`int`): Euler steps from noise to data.
            generator (`torch.Generator`, *optional*): for reproducible noise.
            latents (`torch.Tensor`, *optional*): the starting noise, ``(num_points, dim)``.
            output_type (`str`): ``"pt"`` (a tensor) or ``"np"`` (a float32 array).
            return_dict (`bool`): return a [`ToyFlowPipelineOutput`] rather than a tuple.
            callback_on_step_end (`Callable`, *optional*): called as ``(pipe, step, timestep, kwargs)`` after each
                step with the tensors named in ``callback_on_step_end_tensor_inputs``; may return replacements.
            callback_on_step_end_tensor_inputs (`list[str]`): the tensors passed to the callback.
        """
        if not isinstance(num_points, int) or num_points < 1:
            raise ValueError(f"`num_points` must be a positive integer, got {num_points!r}.")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}.")
        if output_type not in ("pt", "np"):
            raise ValueError(f"`output_type` must be 'pt' or 'np', got {output_type!r}.")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"`callback_on_step_end_tensor_inputs` may name only {self._callback_tensor_inputs}, "
                             f"got {sorted(unknown)}.")
        device, dtype = self._execution_device, self.model.dtype
        if latents is None:
            latents = randn_tensor((num_points, self.model.config.dim), generator=generator, device=device, dtype=dtype)
        latents = latents.to(device=device, dtype=dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            time = (t / self.scheduler.config.num_train_timesteps).expand(latents.shape[0])
            velocity = self.model(latents, time)
            latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                tensors = {name: value for name, value in (("latents", latents),)
                           if name in callback_on_step_end_tensor_inputs}
                latents = (callback_on_step_end(self, i, t, tensors) or {}).get("latents", latents)
        self.maybe_free_model_hooks()

        points = latents.float().cpu().numpy() if output_type == "np" else latents
        return ToyFlowPipelineOutput(points=points) if return_dict else (points,)
