"""Resume trusts no damaged file (issue #25, item 6): a checkpoint's optimizer, scheduler, RNG and trainer states
are checksummed with its weights; ``resume_from_checkpoint=True`` falls back to the newest intact checkpoint and
names the damaged one; an explicit path to a damaged checkpoint is a ``ValueError`` naming the file.

As reported in the issue, before the fix a truncated ``optimizer.pt`` or ``rng_state.pth`` was picked and died in ``torch.load`` with a bare
``OSError``; an edited ``trainer_state.json`` resumed at the wrong step with the later weights.
"""

from __future__ import annotations

import json
import logging

import pytest
from test_reliability_saving import tiny_trainer, truncate

from hfgen.trainers.checkpointing import checkpoint_problem, last_complete_checkpoint


def _edit_step(path):
    state = json.loads(path.read_text())
    state["global_step"] = 1  # resume at step 1 with the weights of a later step
    path.write_text(json.dumps(state))


def _edit_state_same_step(path):
    path.write_text(path.read_text().replace('"epoch"', '"epoch" ', 1))  # a harmless-looking edit: still detected


DAMAGE = {
    "optimizer.pt": truncate,
    "rng_state.pth": truncate,
    "scheduler.pt": truncate,
    "trainer_state.json": _edit_step,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpts")
    tiny_trainer(tmp, max_steps=3, save_steps=1, logging_steps=1).train()
    return tmp


def test_every_file_of_a_checkpoint_is_checksummed(trained):
    listed = json.loads((trained / "out" / "checkpoint-3" / "hfgen_checksums.json").read_text())["files"]
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "model.safetensors",
            "config.json", "training_args.json"} <= set(listed) and "training_args.bin" not in listed


@pytest.mark.parametrize("name", list(DAMAGE))
def test_resume_falls_back_to_the_newest_intact_checkpoint_naming_the_damaged_file(trained, tmp_path, name, caplog):
    import shutil

    shutil.copytree(trained / "out", tmp_path / "out")
    out = tmp_path / "out"
    DAMAGE[name](out / "checkpoint-3" / name)
    problem = checkpoint_problem(out / "checkpoint-3")
    assert problem is not None and name in problem, problem
    with caplog.at_level(logging.WARNING, logger="hfgen.trainers.checkpointing"):
        assert last_complete_checkpoint(out) == str(out / "checkpoint-2")
    assert "checkpoint-3" in caplog.text and name in caplog.text

    trainer = tiny_trainer(tmp_path, max_steps=3, save_steps=1, logging_steps=1)
    with pytest.raises(ValueError, match=f"not a complete checkpoint.*{name}"):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-3"))
    trainer = tiny_trainer(tmp_path, max_steps=3, save_steps=1, logging_steps=1)
    trainer.train(resume_from_checkpoint=True)  # from checkpoint-2: redoes step 3
    assert trainer.state.global_step == 3
    assert [h["step"] for h in trainer.state.log_history if "loss" in h][-1] == 3
    assert checkpoint_problem(out / "checkpoint-3") is None  # rewritten by the resumed run


def test_an_edited_trainer_state_is_refused_even_without_a_step_change(trained, tmp_path):
    import shutil

    shutil.copytree(trained / "out" / "checkpoint-2", tmp_path / "checkpoint-2")
    _edit_state_same_step(tmp_path / "checkpoint-2" / "trainer_state.json")
    assert "trainer_state.json" in checkpoint_problem(tmp_path / "checkpoint-2")
