"""The registry entry of the ``toyflow`` method (strings only: listing methods imports no torch)."""

from hfgen import MethodInfo, Paper

METHOD = MethodInfo(
    name="toyflow",
    summary="Rectified flow on 2-D points: an example hfgen plugin",
    description="Learns the straight-line velocity from Gaussian noise to a mixture of 8 Gaussians on a circle, "
                "and samples it with Diffusers' flow-matching Euler scheduler.",
    paper=Paper(
        title="Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow",
        arxiv_id="2209.03003",
        citation="@inproceedings{liu2023flow,\n  title={Flow Straight and Fast: Learning to Generate and Transfer "
                 "Data with Rectified Flow},\n  author={Liu, Xingchao and Gong, Chengyue and Liu, Qiang},\n  "
                 "booktitle={ICLR},\n  year={2023}\n}",
    ),
    components={
        "ToyFlowConfig": "hfgen_toyflow.toyflow_config:ToyFlowConfig",
        "ToyFlowTrainer": "hfgen_toyflow.toyflow_trainer:ToyFlowTrainer",
        "ToyFlowModel": "hfgen_toyflow.modeling_toyflow:ToyFlowModel",
        "ToyFlowPipeline": "hfgen_toyflow.pipeline_toyflow:ToyFlowPipeline",
    },
    card_template="hfgen_toyflow:cards/toyflow.md",
    demo="hfgen_toyflow.demo:run",
    tags=("diffusers", "rectified-flow", "toy-data"),
    status="example",
)
