"""Registry entry of CROSSAN with MoMEF (import-cheap: strings only)."""

from hfgen.registry import MethodInfo, Paper

METHOD = MethodInfo(
    name="crossan",
    summary="CROSSAN + MoMEF: side adapters of N modality encoders, fused by experts, for recommendation",
    description=(
        "CROSSAN: decoupled side adapters for any number of frozen modality encoders (text, image, audio, video) "
        "with a cross-modal side network and Mixture of Modality Expert Fusion (MoMEF); a reconstruction, as no "
        "official code exists."
    ),
    paper=Paper(
        title="CROSSAN: Towards Efficient and Effective Adaptation of Multiple Multimodal Foundation Models for "
        "Sequential Recommendation",
        arxiv_id="2504.10307",
        citation=(
            "@article{fu2025crossan,\n"
            "  title={CROSSAN: Towards Efficient and Effective Adaptation of Multiple Multimodal Foundation Models "
            "for Sequential Recommendation},\n"
            "  author={Fu, Junchen and Ni, Yongxin and Jose, Joemon M. and Arapakis, Ioannis and Zheng, Kaiwen and "
            "Li, Youhua and Ge, Xuri},\n"
            "  journal={arXiv preprint arXiv:2504.10307},\n"
            "  year={2025}\n"
            "}"
        ),
        code_url=None,
    ),
    components={
        "CROSSANModel": "hfgen.adapters.crossan:CROSSANModel",
        "CROSSANConfig": "hfgen.adapters.crossan:CROSSANConfig",
        "SASRecModel": "hfgen.models.sasrec:SASRecModel",
        "SequentialRecTrainer": "hfgen.trainers.sequential_rec.sequential_rec_trainer:SequentialRecTrainer",
    },
    card_template="hfgen.model_cards:crossan.md",
    demo="hfgen.demos.crossan:run",
    tags=("crossan", "momef", "recommendation", "sequential-recommendation", "peft", "side-adapter", "multimodal"),
    pipeline_tag=None,
    position=8,
)
