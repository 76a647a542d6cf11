"""``docs/adding_a_method.md``, checked: a throwaway method made of its folders and one manifest appears, with
nothing else edited, in ``setup.py``'s entry points, ``hfgen list``, the exports of ``hfgen.trainers`` and the
reliability coverage check (which names its trainer until a builder exists).

The new folders live in a temporary directory added to the ``__path__`` of ``hfgen.methods`` and
``hfgen.trainers`` (as an editable install maps the repository's folders); the installed entry point is written
the way ``pip install -e .`` writes it, from the ``METHODS`` that ``setup.py`` computes.
"""

import runpy
import sys
import textwrap
from pathlib import Path

import pytest

import hfgen.methods
import hfgen.trainers
from hfgen.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent / "_reliability_workers"))

MANIFEST = '''
"""Registry entry of a throwaway method (import-cheap: strings only)."""

from hfgen.registry import MethodInfo, Paper

METHOD = MethodInfo(
    name="toy_method",
    summary="A throwaway method that proves a manifest is all the zoo needs",
    paper=Paper(title="A Toy", arxiv_id="0000.00000"),
    components={
        "ToyTrainer": "hfgen.trainers.toy_method.toy_trainer:ToyTrainer",
        "ToyConfig": "hfgen.trainers.toy_method.toy_config:ToyConfig",
    },
    position=99,
)
'''
CONFIG = '''
from dataclasses import dataclass

from transformers import TrainingArguments


@dataclass
class ToyConfig(TrainingArguments):
    """Arguments of [`ToyTrainer`].

    Parameters:
        scale (`float`, *optional*, defaults to `1.0`):
            Scale of the loss.
    """

    scale: float = 1.0
'''
TRAINER = '''
from transformers import Trainer

from hfgen.trainers import HfgenTrainerMixin, check_args
from hfgen.trainers.toy_method.toy_config import ToyConfig


class ToyTrainer(HfgenTrainerMixin, Trainer):
    """Mean squared output of a model, scaled."""

    method_name = "toy_method"

    def __init__(self, model, args=None, **kwargs):
        super().__init__(model=model, args=check_args(args, ToyConfig, "toy-output"), **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.args.scale * model(inputs["x"]).pow(2).mean()
        return (loss, None) if return_outputs else loss
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "hfgen" / "methods").mkdir(parents=True)
    for manifest in (ROOT / "hfgen" / "methods").glob("*.py"):
        (repo / "hfgen" / "methods" / manifest.name).write_text(manifest.read_text())
    (repo / "hfgen" / "methods" / "toy_method.py").write_text(textwrap.dedent(MANIFEST))
    (repo / "trainers" / "toy_method").mkdir(parents=True)
    (repo / "trainers" / "toy_method" / "__init__.py").write_text("")
    (repo / "trainers" / "toy_method" / "toy_config.py").write_text(textwrap.dedent(CONFIG))
    (repo / "trainers" / "toy_method" / "toy_trainer.py").write_text(textwrap.dedent(TRAINER))
    (repo / "setup.py").write_text((ROOT / "setup.py").read_text())
    monkeypatch.setattr(hfgen.methods, "__path__", [*hfgen.methods.__path__, str(repo / "hfgen" / "methods")])
    monkeypatch.setattr(hfgen.trainers, "__path__", [*hfgen.trainers.__path__, str(repo / "trainers")])
    yield repo
    for name in [m for m in sys.modules if "toy_method" in m]:
        del sys.modules[name]
    for name in ("ToyTrainer", "ToyConfig"):  # cached by the lazy export
        hfgen.trainers.__dict__.pop(name, None)
    REGISTRY.reset()


def setup_kwargs(repo: Path, monkeypatch) -> dict:
    """What ``setup.py`` of ``repo`` passes to ``setuptools.setup`` (run without building anything)."""
    import setuptools

    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(repo)
    runpy.run_path(str(repo / "setup.py"), run_name="__main__")
    return captured


def test_a_manifest_alone_registers_a_method_everywhere(toy_method, tmp_path, monkeypatch, capsys):
    # 1. setup.py derives the entry point from the new manifest file
    entry_points = setup_kwargs(toy_method, monkeypatch)["entry_points"]["hfgen.methods"]
    assert "toy_method = hfgen.methods.toy_method:METHOD" in entry_points

    # 2. installed (an entry point written as pip writes it), `hfgen list` shows it
    dist = tmp_path / "site" / "hfgen_toy-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hfgen-toy\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[hfgen.methods]\n" + "".join(f"{e}\n" for e in entry_points if "toy" in e))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    REGISTRY.reset()
    from hfgen.cli import main

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "toy_method" in listed and "A throwaway method" in listed and "BROKEN" not in listed

    # 3. exported by hfgen.trainers, and the zoo order puts it after the others
    assert "ToyTrainer" in dir(hfgen.trainers) and "ToyConfig" in dir(hfgen.trainers)
    trainer_cls = hfgen.trainers.ToyTrainer
    assert trainer_cls.__module__ == "hfgen.trainers.toy_method.toy_trainer"
    assert [m.name for m in hfgen.methods.builtin_methods()][-1] == "toy_method"

    # 4. the reliability coverage check names its trainer until a builder makes it
    import builders

    assert builders.trainers_without_builder(hfgen.methods.builtin_methods()) == {"ToyTrainer"}
    monkeypatch.setitem(builders.BUILDERS, "toy_method", "ToyTrainer")
    assert builders.trainers_without_builder(hfgen.methods.builtin_methods()) == set()


def test_the_throwaway_trainer_trains_evaluates_and_saves_through_the_base(toy_method, tmp_path):
    import torch
    from datasets import Dataset

    ToyConfig = hfgen.trainers.ToyConfig
    args = ToyConfig(str(tmp_path / "out"), max_steps=2, report_to=[], use_cpu=True, per_device_train_batch_size=4,
                     save_strategy="no", logging_steps=1, remove_unused_columns=False)
    data = Dataset.from_dict({"x": torch.randn(8, 3).tolist()}).with_format("torch")
    from importlib import import_module

    from hfgen import register

    with pytest.raises(ValueError, match="`method_name` of ToyTrainer: Unknown hfgen method 'toy_method'"):
        hfgen.trainers.ToyTrainer(torch.nn.Linear(3, 1), args)  # resolved at creation, not at save_model
    register(import_module("hfgen.methods.toy_method").METHOD, exist_ok=True)  # what its entry point does
    torch.manual_seed(0)
    trainer = hfgen.trainers.ToyTrainer(torch.nn.Linear(3, 1), args, train_dataset=data, eval_dataset=data)
    trainer.train()
    assert trainer.evaluate()["eval_loss"] >= 0
    trainer.save_model()
    saved = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"model.safetensors", "training_args.json", "README.md"} <= saved and "training_args.bin" not in saved
    assert "hfgen-toy-method" in (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(ValueError, match="`args` must be a ToyConfig"):
        hfgen.trainers.ToyTrainer(torch.nn.Linear(3, 1), object())
