"""Test fixture: how the official GFT Stable Diffusion 1.5 code feeds beta to its UNet.

Source: thu-ml/GFT @ 9bf5ee45f454eea76bb2ce321ad36c79eef261ad, ``stable-diffusion-v1-5/train.py``
(``guidance_scale_embedding``, lines 49-75; the training call, lines 787-792:
``unet(noisy_latents, timesteps, timestep_cond=guidance_scale_embedding(torch.reciprocal(beta_in) - 1,
embedding_dim=args.unet_time_cond_proj_dim), encoder_hidden_states=...)``, default
``--unet_time_cond_proj_dim 512``; ``train.sh`` trains this default form, without ``--our_beta`` or ``--distill``).
The released ``SD1.5-GF-finetune`` UNet is a Diffusers ``UNet2DConditionModel`` (``test.py`` loads it with
``UNet2DConditionModel.from_pretrained``).
"""

import torch


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


def official_gft_unet_call(unet, latents, timesteps, beta, encoder_hidden_states):
    """One guidance-free prediction at temperature ``beta`` as the official code computes it."""
    w_embedding = guidance_scale_embedding(torch.reciprocal(beta) - 1, embedding_dim=unet.config.time_cond_proj_dim)
    return unet(latents, timesteps, timestep_cond=w_embedding, encoder_hidden_states=encoder_hidden_states,
                return_dict=False)[0]
