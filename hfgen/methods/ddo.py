"""Registry entry of DDO (import-cheap: strings only)."""

from hfgen.registry import MethodInfo, Paper

METHOD = MethodInfo(
    name="ddo",
    summary="Direct Discriminative Optimization: fine-tune a likelihood model as its own GAN discriminator",
    description=(
        "Direct Discriminative Optimization: fine-tune a likelihood model (diffusion or autoregressive) as a GAN "
        "whose discriminator is the log-likelihood ratio to a frozen reference copy, with self-play rounds."
    ),
    paper=Paper(
        title="Direct Discriminative Optimization: Your Likelihood-Based Generative Model is Secretly a GAN "
        "Discriminator",
        arxiv_id="2503.01103",
        citation=(
            "@inproceedings{zheng2025ddo,\n"
            "  title={Direct Discriminative Optimization: Your Likelihood-Based Generative Model is Secretly a GAN "
            "Discriminator},\n"
            "  author={Zheng, Kaiwen and Chen, Yongxin and Chen, Huayu and He, Guande and Liu, Ming-Yu and Zhu, Jun "
            "and Zhang, Qinsheng},\n"
            "  booktitle={International Conference on Machine Learning (ICML)},\n"
            "  year={2025}\n"
            "}"
        ),
        code_url="https://github.com/NVlabs/DDO",
    ),
    components={
        "DDOTrainer": "hfgen.trainers.ddo.ddo_trainer:DDOTrainer",
        "DDOConfig": "hfgen.trainers.ddo.ddo_config:DDOConfig",
        "ddo_self_play": "hfgen.trainers.ddo.self_play:ddo_self_play",
    },
    card_template="hfgen.model_cards:ddo.md",
    demo="hfgen.demos.ddo:run",
    tags=("ddo", "gan", "fine-tuning", "self-play"),
    pipeline_tag=None,
    position=4,
)
