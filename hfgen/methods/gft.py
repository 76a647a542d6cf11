"""Registry entry of GFT, guidance-free training (import-cheap: strings only)."""

from hfgen.registry import Converter, MethodInfo, Paper

METHOD = MethodInfo(
    name="gft",
    summary="Guidance-free training: one forward pass samples like classifier-free guidance",
    description=(
        "Guidance-free training: a β-conditioned model trained so that one forward pass at β samples "
        "like classifier-free guidance at scale 1/β (diffusion UNets and autoregressive LMs)."
    ),
    paper=Paper(
        title="Visual Generation Without Guidance",
        arxiv_id="2501.15420",
        citation=(
            "@inproceedings{chen2025visual,\n"
            "  title     = {Visual Generation Without Guidance},\n"
            "  author    = {Chen, Huayu and Jiang, Kai and Zheng, Kaiwen and Chen, Jianfei and Su, Hang and Zhu, Jun},\n"
            "  booktitle = {International Conference on Machine Learning (ICML)},\n"
            "  year      = {2025},\n"
            "  url       = {https://arxiv.org/abs/2501.15420}\n"
            "}"
        ),
        code_url="https://github.com/thu-ml/GFT",
    ),
    components={
        "GFTTrainer": "hfgen.trainers.gft.gft_trainer:GFTTrainer",
        "GFTConfig": "hfgen.trainers.gft.gft_config:GFTConfig",
        "GFTCausalLM": "hfgen.pipelines.gft.modeling_gft:GFTCausalLM",
        "GFTCausalLMConfig": "hfgen.pipelines.gft.modeling_gft:GFTCausalLMConfig",
        "GuidanceFreePipeline": "hfgen.pipelines.gft.pipeline_guidance_free:GuidanceFreePipeline",
        "GFTDiTTransformer2DModel": "hfgen.pipelines.gft.modeling_gft_dit:GFTDiTTransformer2DModel",
    },
    card_template="hfgen.model_cards:gft.md",
    demo="hfgen.demos.gft:run",
    tags=("guidance-free", "classifier-free-guidance", "diffusion", "autoregressive"),
    pipeline_tag=None,  # per artifact (GFTTrainer's card): class-conditional images, text-to-image or text-generation
    position=3,
    auto_models={"hfgen_gft_causal_lm": "GFTCausalLM"},
    converters={
        "gft-sd15": Converter("hfgen.convert.gft_sd15:convert_gft_sd15",
                              "GFT Stable Diffusion 1.5 UNet (thu-ml/GFT) -> checked UNet2DConditionModel for "
                              "GuidanceFreePipeline"),
        "gft-dit": Converter("hfgen.convert.gft_dit:convert_gft_dit",
                             "GFT DiT-B/2 / DiT-XL/2 (thu-ml/GFT, linear beta embedder) -> GFTDiTTransformer2DModel "
                             "(Diffusers DiT + beta)"),
    },
)
