"""Registry entry of MF^2 + DFN (import-cheap: strings only)."""

from hfgen.registry import MethodInfo, Paper

METHOD = MethodInfo(
    name="mf2",
    summary="MF² + DFN: face vision-language pretraining for action units and emotion recognition",
    description=(
        "MF^2, a multilevel multimodal face foundation model that aligns faces with language globally (emotion "
        "descriptions) and locally (one feature per Action Unit with its description), scores AUs and emotions "
        "zero-shot from text, and adapts to AU detection and emotion recognition with DFN, a decoupled side network "
        "over the frozen model's cached per-layer states."
    ),
    paper=Paper(
        title="Multimodal Representation Learning Techniques for Comprehensive Facial State Analysis",
        arxiv_id="2504.10351",
        citation=(
            "@inproceedings{zheng2025mf2,\n"
            "  title={Multimodal Representation Learning Techniques for Comprehensive Facial State Analysis},\n"
            "  author={Zheng, Kaiwen and Ge, Xuri and Fu, Junchen and Peng, Jun and Jose, Joemon M.},\n"
            "  booktitle={IEEE International Conference on Multimedia and Expo (ICME)},\n"
            "  year={2025}\n"
            "}"
        ),
        code_url=None,
    ),
    components={
        "MF2Config": "hfgen.models.mf2:MF2Config",
        "MF2Model": "hfgen.models.mf2:MF2Model",
        "MF2Trainer": "hfgen.trainers.mf2.mf2_trainer:MF2Trainer",
        "MF2TrainingConfig": "hfgen.trainers.mf2.mf2_config:MF2TrainingConfig",
        "MF2DataCollator": "hfgen.trainers.mf2.mf2_trainer:MF2DataCollator",
        "DFNConfig": "hfgen.adapters.dfn:DFNConfig",
        "DFNModel": "hfgen.adapters.dfn:DFNModel",
        "DFNOutput": "hfgen.adapters.dfn:DFNOutput",
        "au_f1": "hfgen.metrics.face:au_f1",
        "emotion_accuracy": "hfgen.metrics.face:emotion_accuracy",
    },
    card_template="hfgen.model_cards:mf2.md",
    demo="hfgen.demos.mf2:run",
    tags=("mf2", "dfn", "facial-action-units", "emotion-recognition", "vision-language", "contrastive"),
    pipeline_tag="zero-shot-image-classification",
    auto_models={"hfgen_mf2": "MF2Model"},
    position=9,
)
