"""GFT's released Stable Diffusion 1.5 UNet (thu-ml/GFT ``SD1.5-GF-finetune``) into a checked Diffusers folder.

The official model is already a Diffusers ``UNet2DConditionModel`` whose β input is ``time_cond_proj_dim``
(512): ``timestep_cond = guidance_scale_embedding(1/β − 1)``, the form hfgen's
[`~hfgen.pipelines.GuidanceFreePipeline`] computes (``beta_embedding``). So the conversion is a strict
check plus a safe re-save: the folder's ``config.json`` must describe a ``UNet2DConditionModel`` with a β
input, every tensor must belong to it (none missing, none left over), and the weights are written as
safetensors (a ``.bin`` source is read with ``torch.load(weights_only=True)`` only).
"""

from __future__ import annotations

import os

import torch

from hfgen.convert._common import ConversionError, KeyMapper, finish_conversion, read_checkpoint

# SD1.5-GF-finetune (huggingface.co/aaa-ceku7/GFT) fine-tunes Stable Diffusion v1.5, whose CreativeML OpenRAIL-M
# licence requires its use restrictions to carry over to derivatives; thu-ml/GFT's code is MIT.
LICENSE = dict(license="creativeml-openrail-m", license_source="fine-tuned from Stable Diffusion v1.5, CreativeML "
               "OpenRAIL-M; thu-ml/GFT's code is MIT")


def convert_gft_sd15(source: str | os.PathLike, output: str | os.PathLike | None = None, *,
                     torch_dtype: torch.dtype = torch.float32):
    r"""Check and re-save GFT's SD1.5 UNet.

    Args:
        source (`str` or `os.PathLike`): the released UNet folder (``config.json`` and
            ``diffusion_pytorch_model.safetensors`` or ``.bin``), e.g. ``SD1.5-GF-finetune/unet``.
        output (`str` or `os.PathLike`, *optional*): where to save it.
        torch_dtype (`torch.dtype`, defaults to `torch.float32`): dtype of the saved weights.

    Returns:
        [`~diffusers.UNet2DConditionModel`] with ``time_cond_proj_dim`` set.
    """
    from diffusers import UNet2DConditionModel

    checkpoint, config = read_checkpoint(source)
    if not config:
        raise ConversionError(f"`source` {str(source)!r} must be a Diffusers UNet folder with a config.json.")
    if config.get("_class_name") != "UNet2DConditionModel":
        raise ConversionError(f"{source}/config.json describes a {config.get('_class_name')!r}, not a UNet2DConditionModel.")
    if not config.get("time_cond_proj_dim"):
        raise ConversionError(f"{source}/config.json has no `time_cond_proj_dim`: this UNet has no β input, so it is not "
                              "a GFT model (sample it with guidance='cfg', or fine-tune it with GFTTrainer).")
    unet = UNet2DConditionModel.from_config(config)
    mapper = KeyMapper(checkpoint, "the GFT SD1.5 UNet")
    state = {key: mapper.take(key, tuple(value.shape)) for key, value in unet.state_dict().items()}
    usage = f"""
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from hfgen.pipelines import GuidanceFreePipeline

unet = UNet2DConditionModel.from_pretrained("{output}")
scheduler = DDIMScheduler.from_pretrained("sd-legacy/stable-diffusion-v1-5", subfolder="scheduler")
pipe = GuidanceFreePipeline(unet=unet, scheduler=scheduler)
# prompt_embeds: the CLIP text encoder's output for your prompts (SD1.5's text_encoder)
latents = pipe(prompt_embeds=prompt_embeds, beta=1 / 3.0, num_inference_steps=50, output_type="latent").images
# one UNet call per step; beta = 1/guidance_scale. Decode with SD1.5's VAE. The stock
# StableDiffusionPipeline(guidance_scale=1/beta) also samples it guidance-free (one call per step).
"""
    return finish_conversion(unet, state, torch_dtype=torch_dtype, output=output, kind="gft-sd15", source=source,
                             usage=usage, method="gft", mapper=mapper, **LICENSE)
