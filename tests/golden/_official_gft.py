"""Transcriptions of the official GFT code (thu-ml/GFT @ 9bf5ee45f454eea76bb2ce321ad36c79eef261ad), for golden
tests only (not library code). Only what a comparison needs, with the official names:

- DiT (``DiT/``): ``models.py`` ``TimestepEmbedder.timestep_embedding`` (the sinusoid β·1000 goes through, with
  ``beta_in="linear"``), ``diffusion/gaussian_diffusion.py`` ``get_named_beta_schedule("linear")`` + ``q_sample``
  (``_extract_into_tensor``), ``mean_flat`` and the ``args.rm_guidance`` (non-``distill``) branch of
  ``GaussianDiffusion.training_losses``; ``train.py`` takes ``loss_dict["loss"].mean()``.
- SD1.5 (``stable-diffusion-v1-5/train.py``): ``guidance_scale_embedding`` and the ``args.rm_guidance``
  (non-``distill``, non-``our_beta``) branch of the training step, from ``beta = torch.rand(...) ** args.pho``
  to ``loss = F.mse_loss(interpolated_output, target.float(), reduction="mean")``.

For a float64 comparison the SD1.5 step's ``.float()`` casts of the UNet outputs are left out (marked).
For identical inputs the random draws (noise, timesteps, β's uniform, dropped rows) are passed in. The DiT
``model`` is anything with the DiT forward ``model(x, t, y, beta=..., return_drop_ids=True)`` whose
``.model`` is the module put in eval mode for the unconditional pass (in ``train.py``, the DDP wrapper's module).
"""

import math

import numpy as np
import torch
import torch as th
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------- DiT


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half
    ).to(device=t.device)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def linear_betas(num_diffusion_timesteps):
    scale = 1000 / num_diffusion_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)


def _extract_into_tensor(arr, timesteps, broadcast_shape):
    res = th.from_numpy(arr).to(device=timesteps.device)[timesteps].float()
    while len(res.shape) < len(broadcast_shape):
        res = res[..., None]
    return res + th.zeros(broadcast_shape, device=timesteps.device)


def q_sample(betas, x_start, t, noise):
    alphas_cumprod = np.cumprod(1.0 - betas, axis=0)
    sqrt_alphas_cumprod = np.sqrt(alphas_cumprod)
    sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - alphas_cumprod)
    return (
        _extract_into_tensor(sqrt_alphas_cumprod, t, x_start.shape) * x_start
        + _extract_into_tensor(sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
    )


def mean_flat(tensor):
    return tensor.mean(dim=list(range(1, len(tensor.shape))))


def dit_gft_loss(model, x_start, t, noise, model_kwargs, beta_uniform, min_beta=0.0, max_beta=1.0,
                 num_timesteps=1000, out_channels=4):
    """``training_losses`` with ``args.rm_guidance`` (the DiT branch); ``beta_uniform`` is ``th.rand(B)``."""
    x_t = q_sample(linear_betas(num_timesteps), x_start, t, noise)
    terms = {}
    beta = beta_uniform.to(x_t.device) * (max_beta - min_beta) + min_beta
    model_output, drop_ids = model(x_t, t, beta=beta.to(x_t.device), return_drop_ids=True, **model_kwargs)
    model_output = model_output[:, :out_channels]
    model_kwargs['y'] = th.full_like(model_kwargs['y'], 1000).to(x_t.device)
    model.model.eval()
    with th.no_grad():
        model_output_uncond = model(x_t, t, beta=th.full((x_t.size(0), ), 1.0).to(x_t.device),
                                    **model_kwargs)[:, :out_channels]
    model.model.train()
    beta = beta.reshape(x_t.size(0), 1, 1, 1)
    interpolated_output = beta * model_output + (1 - beta) * model_output_uncond.detach()
    terms["loss"] = mean_flat((noise - interpolated_output) ** 2)
    return terms["loss"].mean()  # train.py: loss = loss_dict["loss"].mean()


# ----------------------------------------------------------------------------------------------- SD1.5


def guidance_scale_embedding(w, embedding_dim=512, dtype=torch.float32):
    assert len(w.shape) == 1
    w = w * 1000.0

    half_dim = embedding_dim // 2
    emb = torch.log(torch.tensor(10000.0)) / (half_dim - 1)
    emb = torch.exp(torch.arange(half_dim, dtype=dtype) * -emb).to(w.device)
    emb = w.to(dtype)[:, None] * emb[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if embedding_dim % 2 == 1:  # zero pad
        emb = torch.nn.functional.pad(emb, (0, 1))
    assert emb.shape == (w.shape[0], embedding_dim)
    return emb


def sd_gft_loss(unet, noise_scheduler, latents, noise, timesteps, encoder_hidden_states, uncond_embeds, drop_ids,
                beta_uniform, pho=1.0, min_omega=0.0, max_omega=1.0, unet_time_cond_proj_dim=512,
                weight_dtype=torch.float32):
    """The training step with ``args.rm_guidance``; ``beta_uniform`` is ``torch.rand(args.train_batch_size)``.
    (In the official script a dropped row's ``encoder_hidden_states`` come from the empty caption, set in the data
    pipeline; here they are passed in already replaced.)"""
    noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
    target = noise
    beta = beta_uniform ** pho * (max_omega - min_omega) + min_omega
    beta_in = torch.where(drop_ids, 1.0, beta)
    w_embedding = guidance_scale_embedding(
        torch.reciprocal(beta_in) - 1, embedding_dim=unet_time_cond_proj_dim).to(weight_dtype)
    model_pred = unet(noisy_latents, timesteps, timestep_cond=w_embedding,
                      encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]  # official: .float()
    unet.eval()
    with torch.no_grad():
        model_pred_uncond = unet(noisy_latents, timesteps,
                                 encoder_hidden_states=uncond_embeds.clone(), return_dict=False)[0].detach()  # official: .float()
    unet.train()
    beta = beta.reshape(latents.shape[0], 1, 1, 1)
    interpolated_output = beta * model_pred + (1 - beta) * model_pred_uncond.detach()
    loss = F.mse_loss(interpolated_output, target, reduction="mean")  # official: target.float()
    return loss
