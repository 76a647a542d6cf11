"""Registry entry of Analytic-Precond consistency trajectory distillation (import-cheap: strings only)."""

from hfgen.registry import MethodInfo, Paper

METHOD = MethodInfo(
    name="analytic_precond",
    summary="Analytic preconditioning of consistency-trajectory distillation",
    description=(
        "Analytic-Precond: consistency trajectory distillation whose preconditioning (the outer scalings f, g of "
        "G(x_t, t, s) = f x_t + g D_theta) is derived from the teacher's PF-ODE and its statistic "
        "l_t = E tr(grad D)/d, estimated on a time grid, instead of CTM's hand-crafted Euler form; with a few-step "
        "trajectory sampler (optional gamma re-noising)."
    ),
    paper=Paper(
        title="Elucidating the Preconditioning in Consistency Distillation",
        arxiv_id="2502.02922",
        citation=(
            "@inproceedings{zheng2025elucidating,\n"
            "  title={Elucidating the Preconditioning in Consistency Distillation},\n"
            "  author={Zheng, Kaiwen and He, Guande and Chen, Jianfei and Bao, Fan and Zhu, Jun},\n"
            "  booktitle={International Conference on Learning Representations},\n"
            "  year={2025}\n"
            "}"
        ),
        code_url=None,
    ),
    components={
        "ConsistencyTrajectoryPipeline": "hfgen.pipelines.consistency_trajectory.pipeline_consistency_trajectory:ConsistencyTrajectoryPipeline",
        "ConsistencyTrajectoryScheduler": "hfgen.pipelines.consistency_trajectory.scheduling_consistency_trajectory:ConsistencyTrajectoryScheduler",
        "TrajectoryMLP": "hfgen.pipelines.consistency_trajectory.modeling_trajectory_mlp:TrajectoryMLP",
        "ConsistencyDistillationTrainer": "hfgen.trainers.consistency_distillation.consistency_distillation_trainer:ConsistencyDistillationTrainer",
        "ConsistencyDistillationConfig": "hfgen.trainers.consistency_distillation.consistency_distillation_config:ConsistencyDistillationConfig",
    },
    card_template="hfgen.model_cards:analytic_precond.md",
    demo="hfgen.demos.analytic_precond:run",
    tags=("consistency-models", "consistency-trajectory-models", "distillation", "unconditional-generation"),
    pipeline_tag="unconditional-image-generation",
    position=6,
)
