"""Registry entry of masked diffusion models with the first-hitting sampler (import-cheap: strings only)."""

from hfgen.registry import Converter, MethodInfo, Paper

METHOD = MethodInfo(
    name="masked_diffusion",
    summary="Masked diffusion language models with the first-hitting sampler (any masked LM)",
    description=(
        "Masked diffusion language models with any masked LM as denoiser, sampled exactly by the first-hitting "
        "sampler (one network call per token) or by the T-step ancestral sampler, with float64 categorical sampling."
    ),
    paper=Paper(
        title="Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit Inaccurate "
        "Categorical Sampling",
        arxiv_id="2409.02908",
        citation="""@inproceedings{zheng2025masked,
  title     = {Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit Inaccurate Categorical Sampling},
  author    = {Zheng, Kaiwen and Chen, Yongxin and Mao, Hanzi and Liu, Ming-Yu and Zhu, Jun and Zhang, Qinsheng},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2025},
  url       = {https://arxiv.org/abs/2409.02908}
}""",
    ),
    components={
        "MaskedDiffusionPipeline": "hfgen.pipelines.masked_diffusion.pipeline_masked_diffusion:MaskedDiffusionPipeline",
        "FirstHittingScheduler": "hfgen.pipelines.masked_diffusion.scheduling_first_hitting:FirstHittingScheduler",
        "AncestralMaskedScheduler": "hfgen.pipelines.masked_diffusion.scheduling_ancestral_masked:AncestralMaskedScheduler",
        "MaskedDiffusionTrainer": "hfgen.trainers.masked_diffusion.masked_diffusion_trainer:MaskedDiffusionTrainer",
        "MaskedDiffusionConfig": "hfgen.trainers.masked_diffusion.masked_diffusion_config:MaskedDiffusionConfig",
        "MDLMDiTForMaskedLM": "hfgen.pipelines.masked_diffusion.modeling_mdlm_dit:MDLMDiTForMaskedLM",
    },
    card_template="hfgen.model_cards:masked_diffusion.md",
    demo="hfgen.demos.masked_diffusion:run",
    tags=("masked-diffusion", "discrete-diffusion", "first-hitting-sampler", "text-generation"),
    pipeline_tag="text-generation",
    position=2,
    auto_models={"hfgen_mdlm_dit": "MDLMDiTForMaskedLM"},
    converters={
        "mdlm": Converter("hfgen.convert.mdlm:convert_mdlm",
                          "MDLM DiT (kuleshov-group/mdlm) -> MDLMDiTForMaskedLM (AutoModelForMaskedLM)", {"kind": "mdlm"}),
        "sedd-absorb": Converter("hfgen.convert.mdlm:convert_mdlm",
                                 "SEDD-absorb DiT (kuleshov-group/mdlm) -> MDLMDiTForMaskedLM, time-conditioned",
                                 {"kind": "sedd-absorb"}),
    },
)
