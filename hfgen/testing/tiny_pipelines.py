"""Tiny instances of every hfgen pipeline, each with every denoiser type it supports, and a call that samples it.

``PIPELINES[name]()`` returns ``(pipe, call)``; ``call(pipe, generator)`` runs a few steps and returns the output as
one tensor. The device tests (`tests/test_devices.py`) and `scripts/gpu_check.py` run them on every device and dtype.
"""

from __future__ import annotations

import numpy as np
import torch

from hfgen.testing.tiny_models import tiny_bert_mlm, tiny_unet2d


def masked_diffusion(scheduler_name, denoiser="bert", time_input="t", **scheduler_kwargs):
    from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline
    from hfgen.pipelines.masked_diffusion.modeling_mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM

    scheduler_class = {"fhs": FirstHittingScheduler, "ancestral": AncestralMaskedScheduler}[scheduler_name]
    if denoiser == "bert":
        model = tiny_bert_mlm(12).eval()
    else:
        torch.manual_seed(0)
        model = MDLMDiTForMaskedLM(MDLMDiTConfig(vocab_size=12, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                 cond_dim=8, frequency_embedding_size=16, max_position_embeddings=16,
                                                 time_conditioning=True)).eval()
    pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=None,
                                   scheduler=scheduler_class(masking_schedule="loglinear", **scheduler_kwargs))
    template = torch.tensor([[3, 11, 11, 5, 11, 11, 11, 11], [11, 11, 4, 11, 11, 11, 11, 2]])

    def call(pipe, generator):
        return pipe(input_ids=template.to(pipe.device), mask_token_id=11, num_inference_steps=4, time_input=time_input,
                    generator=generator, output_type="pt").sequences

    return pipe, call


def consistency_trajectory(preconditioning="euler", denoiser="mlp", gamma=0.0):
    from hfgen.pipelines import ConsistencyTrajectoryPipeline, ConsistencyTrajectoryScheduler
    from hfgen.pipelines.consistency_trajectory.modeling_trajectory_mlp import TrajectoryMLP

    torch.manual_seed(0)
    model = (TrajectoryMLP(dim=2) if denoiser == "mlp" else
             tiny_unet2d(in_channels=1, out_channels=1, class_embed_type="timestep")).eval()
    tables = {}
    if preconditioning == "analytic":
        tables = {"statistics_log_t": [-7.0, 0.0, 5.0], "statistics_l": [1.0, 0.5, 0.0]}
    pipe = ConsistencyTrajectoryPipeline(model, ConsistencyTrajectoryScheduler(preconditioning=preconditioning, gamma=gamma,
                                                                               **tables))

    def call(pipe, generator):
        return pipe(batch_size=2, num_inference_steps=3, generator=generator, output_type="pt").samples

    return pipe, call


def consistency_bridge(solver):
    from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline

    pipe = ConsistencyBridgePipeline(tiny_unet2d().eval(), BridgeScheduler(solver=solver))
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def call(pipe, generator):
        return pipe(image.to(pipe.device), num_inference_steps=3, generator=generator, output_type="pt").images

    return pipe, call


def guidance_free(denoiser, guidance, scheduler_name="ddim"):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel

    from hfgen.pipelines import GuidanceFreePipeline
    from hfgen.pipelines.gft.modeling_gft_dit import GFTDiTTransformer2DModel

    scheduler = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler}[scheduler_name]()
    torch.manual_seed(0)
    if denoiser == "unet":
        unet = UNet2DConditionModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                    layers_per_block=1, norm_num_groups=4, time_cond_proj_dim=16, mid_block_type=None,
                                    num_class_embeds=5, down_block_types=("DownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "UpBlock2D"))
        pipe = GuidanceFreePipeline(unet=unet.eval(), scheduler=scheduler)
    else:
        dit = GFTDiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                       num_layers=1, sample_size=8, num_embeds_ada_norm=10, beta_cond_proj_dim=32)
        pipe = GuidanceFreePipeline(transformer=dit.eval(), scheduler=scheduler)

    def call(pipe, generator):
        return pipe(class_labels=[1, 3], beta=0.5, guidance=guidance, num_inference_steps=3, generator=generator,
                    output_type="latent").images

    return pipe, call


def popcorn():
    import json

    from hfgen.data.microlens import make_synthetic_microlens
    from hfgen.data.text import word_tokenizer
    from hfgen.pipelines import PopcornPipeline
    from hfgen.pipelines.popcorn import TransformersLLM
    from hfgen.pipelines.popcorn.modeling_popularity import PopularityModel
    from hfgen.testing.scripted_lm import ScriptedLM, ScriptedLMConfig, byte_tokenizer
    from hfgen.testing.tiny_models import tiny_popularity_config, tiny_text_to_image, tiny_text_to_video

    tok = byte_tokenizer(model_max_length=16)
    words = word_tokenizer(make_synthetic_microlens(num_videos=8, num_frames=2, image_size=16, seed=0)["title_en"])
    plan = json.dumps({"title": "Goku's five forms", "cover_prompt": "Goku glowing gold", "video_prompt": "A power-up"})
    torch.manual_seed(0)
    llm = TransformersLLM(ScriptedLM(ScriptedLMConfig(script=plan)), byte_tokenizer(), do_sample=False, max_new_tokens=300)
    pipe = PopcornPipeline(llm=llm, text_to_image=tiny_text_to_image(tok), text_to_video=tiny_text_to_video(tok),
                           popularity_model=PopularityModel(tiny_popularity_config(len(words), image_size=16, num_frames=2)).eval(),
                           popularity_tokenizer=words)

    def call(pipe, generator):
        out = pipe("anime", generator=generator, height=32, width=32, num_frames=9, num_inference_steps=2,
                   video_kwargs={"max_sequence_length": 16}, output_type="np")
        return torch.as_tensor(np.concatenate([np.asarray(out.videos[0]).ravel(), np.asarray(out.popularity).ravel()]))

    return pipe, call


PIPELINES = {
    "mdm-fhs": lambda: masked_diffusion("fhs"),
    "mdm-fhs-parallel": lambda: masked_diffusion("fhs", tokens_per_step=2),
    "mdm-fhs-extrapolation": lambda: masked_diffusion("fhs", tokens_per_step=2, parallel_solver="extrapolation"),
    "mdm-fhs-predictor-corrector": lambda: masked_diffusion("fhs", tokens_per_step=2, parallel_solver="predictor_corrector"),
    "mdm-ancestral": lambda: masked_diffusion("ancestral"),
    "mdm-ancestral-float32": lambda: masked_diffusion("ancestral", sampling_dtype="float32"),
    "mdm-dit-t": lambda: masked_diffusion("fhs", denoiser="dit", time_input="t"),
    "mdm-dit-sigma": lambda: masked_diffusion("ancestral", denoiser="dit", time_input="sigma"),
    "ctm-euler": lambda: consistency_trajectory("euler"),
    "ctm-variance-gamma": lambda: consistency_trajectory("variance", gamma=0.5),
    "ctm-analytic": lambda: consistency_trajectory("analytic"),
    "ctm-unet": lambda: consistency_trajectory("euler", denoiser="unet", gamma=0.5),
    "bridge-heun": lambda: consistency_bridge("heun"),
    "bridge-dbim": lambda: consistency_bridge("dbim"),
    "bridge-consistency": lambda: consistency_bridge("consistency"),
    "gft-unet-free": lambda: guidance_free("unet", "free"),
    "gft-unet-cfg": lambda: guidance_free("unet", "cfg"),
    "gft-dit-free": lambda: guidance_free("dit", "free", "dpm"),
    "gft-dit-cfg": lambda: guidance_free("dit", "cfg", "dpm"),
    "popcorn": popcorn,
}
