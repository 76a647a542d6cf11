"""Image-to-image translation with a diffusion bridge: DDBM / DBIM sampling or CDBM consistency sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.utils import BaseOutput, replace_example_docstring

from hfgen.hub import HfgenPipelineMixin
from hfgen.validation import check_arguments, check_finite

from ..utils import CallbackStateMixin, check_callback_inputs, run_callback
from .scheduling_bridge import BridgeScheduler

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import UNet2DModel
        >>> from hfgen.data.paired_digits import load_paired_digits
        >>> from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline

        >>> unet = UNet2DModel(sample_size=16, in_channels=2, out_channels=1, block_out_channels=(16, 32),
        ...                    down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        ...                    layers_per_block=1, norm_num_groups=8)
        >>> pipe = ConsistencyBridgePipeline(unet, BridgeScheduler(solver="consistency"))
        >>> edges, digits = load_paired_digits(size=16, split="test")
        >>> out = pipe((edges[:4] + 1) / 2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
        >>> out.images.shape, out.nfe
        (torch.Size([4, 1, 16, 16]), 2)
        ```
"""


@dataclass
class BridgePipelineOutput(BaseOutput):
    """
    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`): translated images, in [0, 1] for
            `"np"`/`"pt"`.
        nfe (`int`): network evaluations used per image.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    nfe: int


class ConsistencyBridgePipeline(HfgenPipelineMixin, CallbackStateMixin, DiffusionPipeline):
    r"""Translate a source image ``y`` (edges, depth, a masked image ...) into a paired target image by
    integrating a diffusion bridge from ``x_T = y`` back to ``x_0``.

    With ``scheduler.config.solver="consistency"`` this is a consistency diffusion bridge model (CDBM,
    arXiv 2410.22637), sampling in 1-4 evaluations; with ``"dbim"`` or ``"heun"`` it is the DDBM teacher
    sampled with DBIM or DDBM's hybrid Heun sampler.

    Args:
        unet ([`UNet2DModel`]): the network ``F``, conditioned on ``y`` by channel concatenation:
            ``in_channels = 2 * out_channels``.
        scheduler ([`BridgeScheduler`]): bridge schedule, preconditioning and solver.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "source"]

    def __init__(self, unet: UNet2DModel, scheduler: BridgeScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        gray = unet.config.out_channels == 1
        self.image_processor = VaeImageProcessor(
            vae_scale_factor=1, do_resize=False, do_normalize=True, do_convert_rgb=not gray, do_convert_grayscale=gray
        )

    def model_card_kwargs(self):
        """The card names the scheduler's solver."""
        return {"solver": self.scheduler.config.solver}

    def check_inputs(self, source: torch.Tensor, num_inference_steps, eta, generator):
        channels, size = self.unet.config.out_channels, self.unet.config.sample_size
        if self.unet.config.in_channels != 2 * channels:
            raise ValueError(
                f"`unet` must take [x_t, y] concatenated on channels: in_channels ({self.unet.config.in_channels}) "
                f"must be 2 * out_channels ({channels})."
            )
        if source.ndim != 4 or source.shape[0] == 0:
            raise ValueError(f"`image` must be a non-empty batch of images, got shape {tuple(source.shape)}.")
        if source.shape[1] != channels:
            raise ValueError(f"`image` has {source.shape[1]} channels but the model translates {channels}-channel images.")
        expected = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(source.shape[-2:]) != expected:
            raise ValueError(f"`image` is {tuple(source.shape[-2:])} pixels but the model was trained on {expected}.")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an int >= 1, got {num_inference_steps!r}.")
        if eta is not None and not 0 <= eta <= 1:
            raise ValueError(f"`eta` must be in [0, 1], got {eta}.")
        if isinstance(generator, list) and len(generator) != source.shape[0]:
            raise ValueError(f"Got {len(generator)} generators for a batch of {source.shape[0]} images.")

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        image: PipelineImageInput,
        num_inference_steps: int = 2,
        eta: float | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (Diffusers' signature)
    ) -> BridgePipelineOutput | tuple:
        r"""
        Args:
            image (`PipelineImageInput`): source image(s) ``y``: PIL, or arrays/tensors in [0, 1].
            num_inference_steps (`int`, defaults to 2): solver steps (NFE for `"dbim"`/`"consistency"`,
                ``3N - 1`` for `"heun"`).
            eta (`float`, *optional*): stochasticity; defaults to the scheduler's (see [`BridgeScheduler`]).
            num_images_per_prompt (`int`, defaults to 1): translations per source image (they differ when the
                sampler is stochastic, ``eta > 0``), in Diffusers' order: all of the first source, then the next.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): one, or one per image.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` (in [0, 1]) or `"latent"` (the final
                sample as it is, a tensor in the model's [-1, 1] range).
            return_dict (`bool`, defaults to `True`): return a [`BridgePipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, [`~diffusers.callbacks.PipelineCallback`], *optional*): called at the
                end of every step as ``callback_on_step_end(self, step, timestep, callback_kwargs)``; may return
                ``{"latents": ...}`` to replace the current sample ``x_t``.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): what ``callback_kwargs``
                holds, among ``"latents"`` (the current ``x_t``) and ``"source"`` (``y``, read-only).

        Examples:

        Returns:
            [`BridgePipelineOutput`] or `tuple`: the translated images and the number of network evaluations.
        """
        check_arguments(ConsistencyBridgePipeline.__call__, locals())  # types and finiteness, from the signature
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}.")
        if (isinstance(image, (list, tuple)) and not image) or (hasattr(image, "size") and getattr(image, "ndim", 0) and 0 in image.shape):
            raise ValueError("`image` is empty: pass at least one source image.")
        if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be a positive integer, got {num_images_per_prompt!r}.")
        callback_inputs = check_callback_inputs(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        source = self.image_processor.preprocess(image).repeat_interleave(num_images_per_prompt, dim=0)
        check_finite("image", source)
        self.check_inputs(source, num_inference_steps, eta, generator)
        device = self._execution_device
        source = source.to(device=device, dtype=self.unet.dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        sample = source
        self._start_steps(self.scheduler.timesteps)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            if self.interrupt:
                continue
            model_input = torch.cat([self.scheduler.scale_model_input(sample, t), source], dim=1)
            c_noise = self.scheduler.c_noise(t).to(device).expand(source.shape[0])
            model_output = self.unet(model_input, c_noise).sample
            sample = self.scheduler.step(model_output, t, sample, source, generator=generator, eta=eta).prev_sample
            if callback_on_step_end is not None:
                sample = run_callback(self, callback_on_step_end, i, t, callback_inputs,
                                      {"latents": sample, "source": source})["latents"]

        if output_type == "latent":  # the final x_0 as it is, in the model's [-1, 1] range
            images = sample
        else:
            images = self.image_processor.postprocess(sample.clamp(-1, 1), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, self.scheduler.nfe)
        return BridgePipelineOutput(images=images, nfe=self.scheduler.nfe)
