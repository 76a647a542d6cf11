"""The plugin's own tests: hfgen's conformance kits (the checks hfgen's built-in methods pass), a push to the
loopback Hub, and the card's usage snippet run as written."""

import re
import subprocess
import sys
import textwrap

import torch

from hfgen.testing import check_manifest, check_pipeline, check_trainer


def build_trainer(output_dir, **training_args):
    """A tiny, seeded trainer (the trainer kit builds it in fresh processes, so it must be importable)."""
    from datasets import Dataset
    from hfgen_toyflow.demo import eight_gaussians
    from hfgen_toyflow.modeling_toyflow import ToyFlowModel
    from hfgen_toyflow.toyflow_config import ToyFlowConfig
    from hfgen_toyflow.toyflow_trainer import ToyFlowTrainer

    data = Dataset.from_dict({"points": eight_gaussians(48, seed=0).tolist()}).with_format("torch")
    args = ToyFlowConfig(output_dir, per_device_train_batch_size=8, learning_rate=1e-2, use_cpu=True, seed=0,
                         disable_tqdm=True, **training_args)
    torch.manual_seed(0)
    return ToyFlowTrainer(ToyFlowModel(hidden_size=16, num_layers=2), args, train_dataset=data, eval_dataset=data)


def build_pipeline():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from hfgen_toyflow.modeling_toyflow import ToyFlowModel
    from hfgen_toyflow.pipeline_toyflow import ToyFlowPipeline

    torch.manual_seed(0)
    return ToyFlowPipeline(ToyFlowModel(hidden_size=16, num_layers=2), FlowMatchEulerDiscreteScheduler())


def test_manifest():
    check_manifest("toyflow")


def test_pipeline_conventions(tmp_path):
    check_pipeline(build_pipeline, lambda seed: dict(num_points=8, num_inference_steps=3,
                                                     generator=torch.Generator().manual_seed(seed)), tmp_path)


def test_trainer_resumes_exactly_evaluates_saves_and_reloads(tmp_path):
    check_trainer(f"{__name__}:build_trainer", tmp_path)


def test_card_push_and_snippet(tmp_path, fake_hub):
    """The trained pipeline's card names this distribution and its real module; pushed to the (fake) Hub, its
    snippet runs as written in a fresh process."""
    trainer = build_trainer(str(tmp_path / "run"), max_steps=2, save_strategy="no")
    trainer.train()
    trainer.save_model()
    card = (tmp_path / "run" / "README.md").read_text()
    assert "from hfgen_toyflow.pipeline_toyflow import ToyFlowPipeline" in card
    assert "pip install hfgen-toyflow" in card and "- diffusers" in card and "rectified flow" in card

    import hfgen

    url = hfgen.push(tmp_path / "run", "toyflow-ci/tiny")
    assert "toyflow-ci/tiny" in url
    pipe = hfgen.load(tmp_path / "run")
    pipe.save_pretrained(tmp_path / "pipe", repo_id="toyflow-ci/tiny")
    snippet = re.search(r"```python\n(from hfgen_toyflow.*?)```", (tmp_path / "pipe" / "README.md").read_text(), re.S)
    code = snippet.group(1) + "print(type(pipe).__name__, pipe(num_points=4).points.shape)\n"
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ToyFlowPipeline torch.Size([4, 2])" in out.stdout
