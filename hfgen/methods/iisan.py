"""Registry entry of IISAN / IISAN-Versa (import-cheap: strings only)."""

from hfgen.registry import MethodInfo, Paper

METHOD = MethodInfo(
    name="iisan",
    summary="IISAN / IISAN-Versa: side adapters of frozen multimodal encoders for recommendation",
    description=(
        "IISAN / IISAN-Versa: adapt frozen multimodal encoders for sequential recommendation with decoupled intra- "
        "and inter-modal side adapter networks that read cacheable per-layer states (symmetric or asymmetric "
        "encoders), under a SASRec recommender."
    ),
    paper=Paper(
        title="IISAN: Efficiently Adapting Multimodal Representation for Sequential Recommendation with "
        "Decoupled PEFT",
        arxiv_id="2404.02059",
        citation=(
            "@inproceedings{fu2024iisan,\n"
            "  title={IISAN: Efficiently Adapting Multimodal Representation for Sequential Recommendation with "
            "Decoupled PEFT},\n"
            "  author={Fu, Junchen and Ge, Xuri and Xin, Xin and Karatzoglou, Alexandros and Arapakis, Ioannis and "
            "Wang, Jie and Jose, Joemon M.},\n"
            "  booktitle={Proceedings of the 47th International ACM SIGIR Conference on Research and Development in "
            "Information Retrieval},\n"
            "  year={2024}\n"
            "}\n"
            "@article{fu2024iisanversa,\n"
            "  title={Efficient and Effective Adaptation of Multimodal Foundation Models in Sequential "
            "Recommendation},\n"
            "  author={Fu, Junchen and Ge, Xuri and Xin, Xin and Karatzoglou, Alexandros and Arapakis, Ioannis and "
            "Zheng, Kaiwen and Ni, Yongxin and Jose, Joemon M.},\n"
            "  journal={arXiv preprint arXiv:2411.02992},\n"
            "  year={2024}\n"
            "}"
        ),
        code_url="https://github.com/GAIR-Lab/IISAN",
    ),
    components={
        "IISANModel": "hfgen.adapters.iisan:IISANModel",
        "IISANConfig": "hfgen.adapters.iisan:IISANConfig",
        "BackboneItemEncoder": "hfgen.adapters.baselines:BackboneItemEncoder",
        "BackboneItemEncoderConfig": "hfgen.adapters.baselines:BackboneItemEncoderConfig",
        "SASRecModel": "hfgen.models.sasrec:SASRecModel",
        "SequentialRecTrainer": "hfgen.trainers.sequential_rec.sequential_rec_trainer:SequentialRecTrainer",
        "SequentialRecConfig": "hfgen.trainers.sequential_rec.sequential_rec_config:SequentialRecConfig",
    },
    card_template="hfgen.model_cards:iisan.md",
    demo="hfgen.demos.iisan:run",
    tags=("iisan", "recommendation", "sequential-recommendation", "peft", "side-adapter", "multimodal"),
    pipeline_tag=None,
    auto_models={"hfgen_sasrec": "SASRecModel"},  # the recommender CROSSAN shares
    position=7,
)
