"""Registry entry of consistency diffusion bridge models (import-cheap: strings only)."""

from hfgen.registry import Converter, MethodInfo, Paper

METHOD = MethodInfo(
    name="consistency_bridge",
    summary="Consistency diffusion bridges: few-step image-to-image translation (CBD, CBT)",
    description=(
        "Consistency diffusion bridge models (CDBM): image-to-image translation in 1-4 network evaluations by "
        "learning the consistency function of a denoising diffusion bridge's PF-ODE, distilled from a DDBM teacher "
        "(CBD) or trained without one (CBT); with the DDBM Heun and DBIM samplers as baselines."
    ),
    paper=Paper(
        title="Consistency Diffusion Bridge Models",
        arxiv_id="2410.22637",
        citation=(
            "@inproceedings{he2024consistency,\n"
            "  title={Consistency Diffusion Bridge Models},\n"
            "  author={He, Guande and Zheng, Kaiwen and Chen, Jianfei and Bao, Fan and Zhu, Jun},\n"
            "  booktitle={Advances in Neural Information Processing Systems},\n"
            "  year={2024}\n"
            "}"
        ),
        code_url="https://github.com/thu-ml/DiffusionBridge",
    ),
    components={
        "ConsistencyBridgePipeline": "hfgen.pipelines.consistency_bridge.pipeline_consistency_bridge:ConsistencyBridgePipeline",
        "BridgeScheduler": "hfgen.pipelines.consistency_bridge.scheduling_bridge:BridgeScheduler",
        "BridgeTrainer": "hfgen.trainers.consistency_bridge.bridge_trainer:BridgeTrainer",
        "BridgeConfig": "hfgen.trainers.consistency_bridge.bridge_config:BridgeConfig",
        "ConsistencyBridgeTrainer": "hfgen.trainers.consistency_bridge.consistency_bridge_trainer:ConsistencyBridgeTrainer",
        "ConsistencyBridgeConfig": "hfgen.trainers.consistency_bridge.consistency_bridge_config:ConsistencyBridgeConfig",
    },
    card_template="hfgen.model_cards:consistency_bridge.md",
    demo="hfgen.demos.consistency_bridge:run",
    tags=("diffusion-bridge", "consistency-models", "image-to-image"),
    pipeline_tag="image-to-image",
    position=5,
    converters={
        "ddbm": Converter("hfgen.convert.ddbm:convert_ddbm",
                          "DDBM teacher (alexzhou907/DDBM ADM UNet; -o preset='e2h' or 'diode') -> UNet2DModel for "
                          "ConsistencyBridgePipeline"),
    },
)
