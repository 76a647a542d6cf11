"""Registry entry of NFT, Negative-aware Fine-Tuning (import-cheap: strings only)."""

from hfgen.registry import MethodInfo, Paper

METHOD = MethodInfo(
    name="nft",
    summary="Negative-aware Fine-Tuning: RL from a verifier by supervised learning (on TRL's GRPOTrainer)",
    description=(
        "Negative-aware Fine-Tuning: learn from a binary verifier by supervised learning, fitting the model's own "
        "wrong answers with an implicit negative policy built from the model itself (RFT is neg_weight=0)."
    ),
    paper=Paper(
        title="Bridging Supervised Learning and Reinforcement Learning in Math Reasoning",
        arxiv_id="2505.18116",
        citation=(
            "@article{chen2025nft,\n"
            "  title={Bridging Supervised Learning and Reinforcement Learning in Math Reasoning},\n"
            "  author={Chen, Huayu and Zheng, Kaiwen and Zhang, Qinsheng and Cui, Ganqu and Cui, Yin and Ye, Haotian "
            "and Lin, Tsung-Yi and Liu, Ming-Yu and Zhu, Jun and Wang, Haoxiang},\n"
            "  journal={arXiv preprint arXiv:2505.18116},\n"
            "  year={2025}\n"
            "}"
        ),
        code_url="https://github.com/NVlabs/NFT",
    ),
    components={
        "NFTTrainer": "hfgen.trainers.nft.nft_trainer:NFTTrainer",
        "NFTConfig": "hfgen.trainers.nft.nft_config:NFTConfig",
    },
    card_template="hfgen.model_cards:nft.md",
    demo="hfgen.demos.nft:run",
    tags=("trl", "reinforcement-learning"),
    pipeline_tag="text-generation",
    position=1,
)
