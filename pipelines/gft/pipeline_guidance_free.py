"""Guidance-free sampling (GFT, arXiv 2501.15420): one network call per denoising step, with a UNet or a DiT."""

from __future__ import annotations

import inspect

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from hfgen.hub import HfgenPipelineMixin
from hfgen.validation import check_arguments, check_finite

from ..utils import CallbackStateMixin, check_callback_inputs, run_callback
from .modeling_beta_conditioning import guidance_scale_to_beta, has_beta_input, unet_timestep_cond
from .modeling_gft_dit import GFTDiTTransformer2DModel

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DDIMScheduler, UNet2DConditionModel
        >>> from hfgen.pipelines import GuidanceFreePipeline

        >>> unet = UNet2DConditionModel(  # a (tiny, untrained) class-conditional GFT UNet: 10 classes + null
        ...     sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
        ...     down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        ...     mid_block_type=None, norm_num_groups=8, num_class_embeds=11, time_cond_proj_dim=32)
        >>> pipe = GuidanceFreePipeline(unet=unet, scheduler=DDIMScheduler())
        >>> images = pipe(class_labels=[3, 7], beta=0.5, num_inference_steps=10, output_type="pt").images
        >>> images.shape  # one unet call per step, same quality target as CFG at guidance_scale = 1/beta
        torch.Size([2, 1, 8, 8])

        >>> from diffusers import DPMSolverMultistepScheduler
        >>> from .modeling_gft_dit import GFTDiTTransformer2DModel

        >>> dit = GFTDiTTransformer2DModel(  # a (tiny, untrained) GFT DiT; `hfgen convert gft-dit` makes the real ones
        ...     num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=1,
        ...     sample_size=8, num_embeds_ada_norm=10, beta_cond_proj_dim=32)
        >>> pipe = GuidanceFreePipeline(transformer=dit, scheduler=DPMSolverMultistepScheduler())
        >>> latents = pipe(class_labels=[3, 7], beta=1 / 1.5, num_inference_steps=10, output_type="latent").images
        >>> latents.shape  # one DiT call per step; decode `latents / 0.18215` with the sd-vae-ft-ema VAE
        torch.Size([2, 4, 8, 8])
        ```
"""

GUIDANCE_MODES = ("free", "cfg")
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class GuidanceFreePipeline(HfgenPipelineMixin, CallbackStateMixin, DiffusionPipeline):
    r"""Sample a GFT-trained denoiser at temperature ``beta`` with one forward pass per step, or a CFG-trained
    one (or the same GFT model at β = 1) with classifier-free guidance, two passes per step, for comparison.

    GFT trains ε_θ(x_t | c, β) so that at the optimum ε_θ(x_t | c, β) = ε_u + (ε_c − ε_u)/β: the CFG
    prediction at guidance scale s = 1/β (see ``hfgen.trainers.GFTTrainer``).

    Args:
        unet ([`UNet2DConditionModel`], *optional*):
            The denoiser (ε-, v- or x0-prediction, as its scheduler says). Class-conditional models use
            ``num_class_embeds = num_classes + 1`` with the last label as the null (dropped) class;
            text-conditional ones take ``prompt_embeds``. GFT models have ``time_cond_proj_dim`` (the β input).
        scheduler ([`SchedulerMixin`]):
            Any Diffusers scheduler, e.g. [`DDIMScheduler`] or [`DPMSolverMultistepScheduler`] (the paper's sampler).
        transformer ([`~hfgen.pipelines.gft.GFTDiTTransformer2DModel`], *optional*):
            A class-conditional GFT DiT (e.g. from ``hfgen convert gft-dit``), instead of ``unet``, called as
            ``transformer(x, t, class_labels=y, beta=β)``; its null class is ``num_embeds_ada_norm`` (DiT's
            ``LabelEmbedder``), and of a learned-sigma output (``out_channels = 2 * in_channels``) only the
            ε half is used, as in [`~diffusers.DiTPipeline`] and the official GFT sampling. The official evaluation
            (thu-ml/GFT ``DiT/eval.sh``) samples with ``DPMSolverMultistepScheduler(solver_order=2)`` (its defaults
            are DiT's linear β schedule over 1000 steps), 50 steps; it feeds the network ``t + 1`` where this
            pipeline, like ``DiTPipeline``, feeds the scheduler's ``t``.

        vae ([`AutoencoderKL`], *optional*):
            Decodes latents into images (``vae.decode(latents / vae.config.scaling_factor)``, as [`~diffusers.DiTPipeline`]
            does), e.g. ``stabilityai/sd-vae-ft-ema`` for DiT or the Stable Diffusion VAE. Without it the denoiser's
            samples are the images (pixel-space UNets), or, for a latent model, only ``output_type="latent"`` is
            accepted.

    Pass one of ``unet`` and ``transformer`` (both are optional components in Diffusers' sense, so that a folder
    saved with either loads with [`~DiffusionPipeline.from_pretrained`]; sampling needs one, and ``scheduler``).
    """

    model_cpu_offload_seq = "transformer->unet->vae"
    _optional_components = ["unet", "scheduler", "transformer", "vae"]  # __call__ needs `scheduler` and one denoiser
    _callback_tensor_inputs = ["latents"]

    def __init__(self, unet: UNet2DConditionModel | None = None, scheduler: KarrasDiffusionSchedulers | None = None,
                 transformer: GFTDiTTransformer2DModel | None = None, vae: AutoencoderKL | None = None):
        super().__init__()
        if unet is not None and transformer is not None:
            raise ValueError("Pass one denoiser, `unet` (a UNet2DConditionModel) or `transformer` (a "
                             "GFTDiTTransformer2DModel), not both.")
        if transformer is not None and not isinstance(transformer, GFTDiTTransformer2DModel):
            raise ValueError(f"`transformer` must be a GFTDiTTransformer2DModel, got {type(transformer).__name__}.")
        self.register_modules(unet=unet, scheduler=scheduler, transformer=transformer, vae=vae)
        # What this pipeline samples without (Diffusers' tests set these to None, and `save_pretrained` reads this
        # instance's list); loading reads the class's list, so a folder saved with either denoiser loads.
        needed = {"scheduler", "transformer" if transformer is not None else "unet"}
        self._optional_components = [name for name in type(self)._optional_components
                                     if name not in needed or getattr(self, name) is None]

    @property
    def guidance_scale(self) -> float | None:
        """The CFG scale ``1/beta`` the current call samples at (a callback may change ``pipe._guidance_scale``;
        the next step then samples at the new scale, i.e. at ``beta = 1 / guidance_scale`` for GFT)."""
        return getattr(self, "_guidance_scale", None)

    def model_card_kwargs(self) -> dict:
        """The card's kind (a DiT or a UNet), its classes and null label, and the matching Hub tags."""
        kwargs = {"kind": "dit"} if self.denoiser is not None and self.denoiser is not self.unet else {}
        if self.denoiser is None:
            return kwargs
        if self.num_classes is None:  # text-conditional
            return {**kwargs, "pipeline_tag": "text-to-image"}
        # the Hub has no class-conditional pipeline tag: none, and a `class-conditional-image-generation` tag
        return {**kwargs, "num_classes": self.num_classes, "null_class_label": self.null_class_label,
                "pipeline_tag": None, "extra_tags": ["class-conditional-image-generation"]}

    @property
    def denoiser(self) -> UNet2DConditionModel | GFTDiTTransformer2DModel | None:
        """The network called at every step: ``transformer`` if given, else ``unet``."""
        return self.transformer if getattr(self, "transformer", None) is not None else self.unet

    @property
    def num_classes(self) -> int | None:
        if self.denoiser is not self.unet:  # DiT's LabelEmbedder: num_classes rows + the null row
            return self.transformer.config.num_embeds_ada_norm
        n = self.unet.config.num_class_embeds
        return None if n is None else n - 1

    @property
    def null_class_label(self) -> int | None:
        return self.num_classes

    def check_inputs(self, class_labels, prompt_embeds, negative_prompt_embeds, beta, guidance_scale, guidance,
                     num_inference_steps, generator, output_type):
        if guidance not in GUIDANCE_MODES:
            raise ValueError(f"`guidance` must be one of {GUIDANCE_MODES}, got {guidance!r}.")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        if output_type != "latent" and self.denoiser is not self.unet and getattr(self, "vae", None) is None:
            raise ValueError(f"`output_type={output_type!r}` needs a `vae` to decode the DiT's latents: build the "
                             "pipeline with `vae=AutoencoderKL.from_pretrained(...)` (DiT: stabilityai/sd-vae-ft-ema), "
                             "or pass `output_type='latent'`.")
        if beta is not None and guidance_scale is not None:
            raise ValueError("Pass either `beta` or `guidance_scale` (= 1/beta), not both.")
        if beta is not None and not 0.0 < beta <= 1.0:
            raise ValueError(f"`beta` must lie in (0, 1] (1 = no guidance, smaller = stronger), got {beta!r}.")
        if guidance_scale is not None and not guidance_scale >= 1.0:
            raise ValueError(f"`guidance_scale` must be >= 1, got {guidance_scale!r}.")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive int, got {num_inference_steps!r}.")
        if guidance == "free" and not has_beta_input(self.denoiser):
            if self.denoiser is self.unet:
                raise ValueError(
                    "`guidance='free'` needs a GFT model with a β input (`unet.config.time_cond_proj_dim`), but this "
                    "unet has none; train it with GFTTrainer (or add_beta_conditioning + fine-tuning), or sample it "
                    "with guidance='cfg'."
                )
            raise ValueError("`guidance='free'` needs a GFT model with a β input, but this transformer has "
                             "`beta_cond_proj_dim=None` (a plain DiT); sample it with guidance='cfg'.")
        if (class_labels is None) == (prompt_embeds is None):
            raise ValueError("Pass exactly one of `class_labels` (class-conditional unet) or `prompt_embeds`.")
        if class_labels is not None:
            if self.num_classes is None:
                raise ValueError("`class_labels` were given but the unet has no class embedding (`num_class_embeds`).")
            labels = torch.as_tensor(class_labels, device="cpu" if not torch.is_tensor(class_labels) else None).reshape(-1)
            if labels.dtype.is_floating_point or labels.numel() == 0 or labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(
                    f"`class_labels` must be integers in [0, {self.num_classes - 1}] (label {self.num_classes} is the "
                    f"null class), got {labels.tolist()}."
                )
            batch_size = labels.numel()
        else:
            if self.denoiser is not self.unet:
                raise ValueError("`prompt_embeds` were given but the transformer (a DiT) is class-conditional; pass "
                                 "`class_labels`.")
            batch_size = prompt_embeds.shape[0]
            if guidance == "cfg" and negative_prompt_embeds is None:
                raise ValueError("`guidance='cfg'` with `prompt_embeds` needs `negative_prompt_embeds` (e.g. of '').")
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"`generator` is a list of length {len(generator)}, but the batch size is {batch_size}.")
        return batch_size

    def prepare_latents(self, batch_size, dtype, device, generator, latents=None):
        size = self.denoiser.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, self.denoiser.config.in_channels, *size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif latents.shape != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
        return latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma

    def prepare_conditions(self, class_labels, prompt_embeds, negative_prompt_embeds, device, dtype):
        """Return (conditional, null) keyword arguments of the denoiser call."""
        if class_labels is not None:
            labels = torch.as_tensor(class_labels, device=device).reshape(-1).long()
            null = torch.full_like(labels, self.null_class_label)
            return {"class_labels": labels, "encoder_hidden_states": None}, {"class_labels": null, "encoder_hidden_states": None}
        cond = {"encoder_hidden_states": prompt_embeds.to(device=device, dtype=dtype)}
        null = None if negative_prompt_embeds is None else {
            "encoder_hidden_states": negative_prompt_embeds.to(device=device, dtype=dtype).expand_as(prompt_embeds)}
        return cond, null

    def _denoise(self, x, t, beta, condition):
        """One network call; ``beta`` is a float64 tensor (see [`beta_embedding`]) or None (no β input)."""
        if self.denoiser is not self.unet:
            timesteps = t.reshape(-1).expand(x.shape[0]) if torch.is_tensor(t) else torch.full((x.shape[0],), t, device=x.device)
            beta = beta if has_beta_input(self.transformer) else None
            out = self.transformer(x, timesteps.to(x.device), class_labels=condition["class_labels"], beta=beta).sample
            return out[:, : self.transformer.config.in_channels]  # a learned-sigma output: its ε half
        timestep_cond = unet_timestep_cond(self.unet, beta)
        timestep_cond = None if timestep_cond is None else timestep_cond.to(device=x.device, dtype=x.dtype)
        return self.unet(x, t, timestep_cond=timestep_cond, **condition).sample

    def predict(self, latents, t, beta, guidance_scale, guidance, condition, null_condition):
        """The model output of one step: GFT's single call at β, or CFG's ε_u + s(ε_c − ε_u) (batched, 2 NFEs)."""
        batch_size = latents.shape[0]
        if guidance == "free":
            return self._denoise(latents, t, torch.full((batch_size,), beta, dtype=torch.float64, device=latents.device),
                                 condition)
        ones = torch.ones(2 * batch_size, dtype=torch.float64, device=latents.device)  # a GFT model used with CFG: β = 1
        both = {k: None if v is None else torch.cat([v, null_condition[k]]) for k, v in condition.items()}
        cond, uncond = self._denoise(torch.cat([latents, latents]), t, ones, both).chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        class_labels: int | list[int] | torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        beta: float | None = None,
        guidance_scale: float | None = None,
        guidance: str = "free",
        num_inference_steps: int = 50,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (Diffusers' signature)
    ) -> ImagePipelineOutput | tuple:
        r"""
        Args:
            class_labels (`int`, `list[int]` or `torch.Tensor`): one class id per image, in ``[0, num_classes)``.
            prompt_embeds (`torch.Tensor`, *optional*): text-encoder states ``(B, L, D)`` for a text-conditional unet.
            negative_prompt_embeds (`torch.Tensor`, *optional*): the null text condition (e.g. of ``""``), for CFG.
            beta (`float`, *optional*): GFT temperature in ``(0, 1]``; 1 is conditional sampling without guidance.
            guidance_scale (`float`, *optional*): the equivalent CFG scale ``1/beta`` (>= 1). Default: ``beta = 1``.
            guidance (`str`, defaults to `"free"`): ``"free"``: one call per step at β (needs a GFT model);
                ``"cfg"``: classifier-free guidance at scale ``1/beta`` with two network evaluations per step.
            num_inference_steps (`int`, defaults to 50): denoising steps.
            num_images_per_prompt (`int`, defaults to 1): images per class label (or per row of ``prompt_embeds``).
            generator (`torch.Generator` or a list of them, *optional*): one generator, or one per image.
            latents (`torch.Tensor`, *optional*): the initial noise, ``(B, C, H, W)``.
            output_type (`str`, defaults to `"pil"`): ``"pil"``, ``"np"`` (``(B, H, W, C)`` in [0, 1]), ``"pt"``
                (``(B, C, H, W)`` in [0, 1]), decoded by ``vae`` when the pipeline has one, or ``"latent"`` (the final
                latents as they are).
            return_dict (`bool`, defaults to `True`): return an [`ImagePipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, [`~diffusers.callbacks.PipelineCallback`], *optional*): called at the
                end of every step as ``callback_on_step_end(self, step, timestep, callback_kwargs)``; may return
                ``{"latents": ...}`` to replace the latents.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): what ``callback_kwargs`` holds.

        Examples:
        """
        check_arguments(GuidanceFreePipeline.__call__, locals())  # types and finiteness, from the signature
        check_finite("latents", latents)
        if self.denoiser is None or self.scheduler is None:
            raise ValueError("This pipeline has no denoiser (`unet` or `transformer`) or no `scheduler`; build it with "
                             "both, e.g. GuidanceFreePipeline(transformer=..., scheduler=DPMSolverMultistepScheduler()).")
        if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be a positive integer, got {num_images_per_prompt!r}.")
        callback_inputs = check_callback_inputs(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        if num_images_per_prompt > 1:  # Diffusers' order: all images of the first prompt, then the next
            if class_labels is not None:
                class_labels = torch.as_tensor(class_labels, device="cpu" if not torch.is_tensor(class_labels) else None)
                class_labels = class_labels.reshape(-1).repeat_interleave(num_images_per_prompt)
            if prompt_embeds is not None:
                prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            if negative_prompt_embeds is not None and negative_prompt_embeds.shape[0] > 1:
                negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        batch_size = self.check_inputs(class_labels, prompt_embeds, negative_prompt_embeds, beta, guidance_scale,
                                       guidance, num_inference_steps, generator, output_type)
        beta = 1.0 if beta is None and guidance_scale is None else beta
        beta = guidance_scale_to_beta(guidance_scale) if beta is None else float(beta)
        guidance_scale = 1.0 / beta
        if guidance == "cfg" and guidance_scale == 1.0:
            guidance = "free" if has_beta_input(self.denoiser) else "conditional"

        device, dtype = self._execution_device, self.denoiser.dtype
        condition, null_condition = self.prepare_conditions(class_labels, prompt_embeds, negative_prompt_embeds, device, dtype)
        latents = self.prepare_latents(batch_size, dtype, device, generator, latents)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        self._guidance_scale = guidance_scale
        self._start_steps(self.scheduler.timesteps)

        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            if self.interrupt:
                continue
            model_input = self.scheduler.scale_model_input(latents, t)
            if guidance == "conditional":  # CFG at scale 1 is the plain conditional model: one call
                model_output = self._denoise(model_input, t, None, condition)
            else:  # at the scale a callback may have changed
                model_output = self.predict(model_input, t, 1.0 / self.guidance_scale, self.guidance_scale, guidance,
                                            condition, null_condition)
            latents = self.scheduler.step(model_output, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                latents = run_callback(self, callback_on_step_end, i, t, callback_inputs, {"latents": latents})["latents"]

        self.maybe_free_model_hooks()
        if output_type == "latent":
            return ImagePipelineOutput(images=latents) if return_dict else (latents,)
        if getattr(self, "vae", None) is not None:  # as DiTPipeline / StableDiffusionPipeline
            latents = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        image = (latents / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            image = image.cpu().permute(0, 2, 3, 1).float().numpy()
            if output_type == "pil":
                image = self.numpy_to_pil(image)
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)

