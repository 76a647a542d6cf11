"""Conformance kits: the checks hfgen's own methods pass, callable from a plugin's own test suite.

- [`check_manifest`]: a registered method's components import from the module its manifest names, its
  pipelines and trainers use hfgen's public bases, its Auto model types register and its converters import, its card
  template loads and renders, its demo and command load
  (``hfgen check NAME`` runs these, then [`check_demo`]);
- [`check_demo`]: the demo runs (at smoke size when it takes ``smoke``) and returns a sound ``DemoResult``;
- [`check_pipeline`]: a subset of Diffusers' ``PipelineTesterMixin`` (components, determinism, dict/tuple
  outputs, save/load, step-end callbacks, ``to(torch.bfloat16)``) plus the hfgen card and checksums of a save;
- [`check_trainer`]: exact resume in a fresh process, evaluation, ``save_model`` (weights, ``training_args.json``,
  card, checksums) and the strict reload of what it wrote.

Each raises an ``AssertionError`` that names what failed.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------------------------ manifest


def manifest_checks(name: str) -> Iterator[tuple[str, str | None]]:
    """``(what was checked, problem or None)`` for each part of the registered method ``name``."""
    from hfgen.hub import card_template_problem, render_model_card
    from hfgen.registry import get_method, method_distribution

    info = get_method(name)
    yield f"registered by the distribution {method_distribution(name) or '(in-process register)'}", None
    pipelines = []
    for cls_name, target in sorted(info.components.items()):
        try:
            obj = info.load_component(cls_name)
        except Exception as err:
            yield f"component {cls_name} ({target})", f"does not import: {type(err).__name__}: {err}"
            continue
        yield f"component {cls_name} ({target})", _component_problem(info, cls_name, target, obj)
        if isinstance(obj, type) and _is_pipeline(obj):
            pipelines.append(cls_name)
    for model_type, cls_name in sorted(info.auto_models.items()):
        yield f"Auto model type {model_type} ({cls_name})", _auto_model_problem(info, model_type, cls_name)
    for kind, converter in sorted(info.converters.items()):
        yield f"converter {kind} ({converter.target})", _import_problem(converter.target)
    template = info.card_template or "hfgen.model_cards:_base.md"
    problem = card_template_problem(name)
    yield f"card template {template} loads", problem
    if problem is None:
        yield f"card template {template} renders", _card_problem(info, pipelines, render_model_card)
    if info.demo is not None:
        try:
            params = inspect.signature(info.load_demo()).parameters
            problem = None if len(params) >= 1 and "seed" in params else "must take (output_dir, seed=0, ...)"
        except Exception as err:
            problem = f"does not import: {type(err).__name__}: {err}"
        yield f"demo {info.demo}", problem
    if info.cli is not None:
        yield f"command {info.cli}", _import_problem(info.cli)


def _import_problem(target: str) -> str | None:
    from hfgen.registry import _import_object

    try:
        _import_object(target)
    except Exception as err:
        return f"does not import: {type(err).__name__}: {err}"
    return None


def _is_pipeline(cls: type) -> bool:
    from diffusers import DiffusionPipeline

    return issubclass(cls, DiffusionPipeline)


def _component_problem(info, cls_name: str, target: str, obj: Any) -> str | None:
    from transformers import Trainer

    from hfgen.hub import HfgenPipelineMixin
    from hfgen.trainers import HfgenTrainerMixin

    if not isinstance(obj, type):
        return None
    if f"{obj.__module__}:{obj.__qualname__}" != target:  # cards and hfgen.load find a class by its own path
        return f"the manifest names {target!r} but the class is {obj.__module__}:{obj.__qualname__}"
    if obj.__name__ != cls_name:
        return f"the key {cls_name!r} differs from the class name {obj.__name__!r} (hfgen.load dispatches on it)"
    if _is_pipeline(obj) and not issubclass(obj, HfgenPipelineMixin):
        return "a DiffusionPipeline without hfgen.pipelines.HfgenPipelineMixin: its saves carry no card or checksums"
    if issubclass(obj, Trainer):
        if not issubclass(obj, HfgenTrainerMixin):
            return "a Trainer without hfgen.trainers.HfgenTrainerMixin first among its bases"
        method = inspect.getattr_static(obj, "method_name", None)
        if isinstance(method, str) and method != info.name:
            return f"its `method_name` is {method!r}, not {info.name!r}"
    return None


def _auto_model_problem(info, model_type: str, cls_name: str) -> str | None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        info.load_component(cls_name)
    except Exception as err:
        return f"does not import: {type(err).__name__}: {err}"
    if model_type not in CONFIG_MAPPING:
        return (f"importing {info.component_module(cls_name)} does not register {model_type!r} with AutoConfig "
                "(end the module with AutoConfig.register / AutoModel*.register)")
    return None


def _card_problem(info, pipelines: list[str], render) -> str | None:
    from huggingface_hub import ModelCard

    result = dict(task_type="t", dataset_type="d", dataset_name="d", metric_type="m", metric_value=1.0)
    for pipeline_class in pipelines or [None]:
        try:
            text = str(render(info.name, model_name="m", training_config={"learning_rate": 1e-3}, eval_results=[result],
                              **({"pipeline_class": pipeline_class} if pipeline_class else {})))
        except Exception as err:
            return f"{type(err).__name__}: {err}"
        data = ModelCard(text).data
        if data.library_name != "hfgen" or data.to_dict().get("hfgen_method") != info.name:
            return "its front matter lost `library_name: hfgen` / `hfgen_method` (keep `{{ card_data }}` from _base.md)"
        if pipeline_class:
            module = info.components[pipeline_class].partition(":")[0]
            public = "hfgen.pipelines" if module.startswith("hfgen.pipelines.") else module
            if f"from {public} import {pipeline_class}" not in text:
                return f"the card does not show `from {public} import {pipeline_class}`"
    return None


def check_manifest(name: str) -> None:
    """Every check of [`manifest_checks`] passes, or an ``AssertionError`` listing the failures."""
    failures = [f"{what}: {problem}" for what, problem in manifest_checks(name) if problem is not None]
    assert not failures, f"method {name!r}:\n- " + "\n- ".join(failures)


def check_demo(name: str, output_dir: str | os.PathLike, seed: int = 0, smoke: bool = True):
    """Run the demo of ``name`` (with ``smoke=True`` when it takes ``smoke``) and check its ``DemoResult``."""
    from hfgen.demos import DemoResult
    from hfgen.registry import get_method

    demo = get_method(name).load_demo()
    kwargs = {"smoke": smoke} if "smoke" in inspect.signature(demo).parameters else {}
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    result = demo(Path(output_dir), seed=seed, **kwargs)
    assert isinstance(result, DemoResult), f"the demo of {name!r} returned {type(result).__name__}, not a DemoResult"
    assert result.method == name, f"DemoResult.method is {result.method!r}, not {name!r}"
    for field in ("baseline_value", "method_value"):
        value = getattr(result, field)
        assert isinstance(value, (int, float)) and math.isfinite(value), f"DemoResult.{field} is {value!r}"
    missing = [f for f in result.figures if not Path(f).is_file()]
    assert not missing, f"the demo of {name!r} lists figures it did not write: {missing}"
    return result


# ------------------------------------------------------------------------------------------------ pipeline


def _max_diff(a, b) -> float:
    import numpy as np
    import torch

    def as_np(x):
        return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)

    return float(np.abs(as_np(a).astype(np.float64) - as_np(b).astype(np.float64)).max())


def check_pipeline(build: Callable[[], Any], inputs: Callable[[int], dict], tmp_dir: str | os.PathLike, *,
                   output: Callable[[Any], Any] = lambda out: out[0], load_kwargs: dict | None = None,
                   callback_key: str | None = None, atol: float = 1e-4) -> None:
    """The Diffusers conventions and hfgen's saving, on the pipeline ``build()`` makes.

    Args:
        build: returns a fresh, seeded pipeline (tiny: each check builds one).
        inputs: ``seed -> __call__ kwargs`` (with a fresh ``generator`` from the seed).
        tmp_dir: an empty folder for the saves.
        output: the array to compare, from the ``return_dict=False`` tuple.
        load_kwargs: what ``from_pretrained`` needs besides the folder.
        callback_key: the tensor a ``PipelineCallback`` zeroes at the last step (default: the first of
            ``_callback_tensor_inputs``); the result must change.
    """
    import numpy as np
    import torch
    from diffusers.callbacks import PipelineCallback
    from huggingface_hub import ModelCard

    import hfgen
    from hfgen.hub import CHECKSUMS_NAME

    load_kwargs = load_kwargs or {}
    tmp_dir = Path(tmp_dir)

    def fresh():
        pipe = build()
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = fresh()
    name = type(pipe).__name__
    init = set(inspect.signature(type(pipe).__init__).parameters) - {"self"}
    assert set(pipe.components) == init, f"{name}.components {sorted(pipe.components)} != __init__ {sorted(init)}"
    expected = output(pipe(**inputs(0), return_dict=False))
    assert _max_diff(expected, output(pipe(**inputs(0), return_dict=False))) == 0, f"{name}: the same seed differs"
    assert _max_diff(output(pipe(**inputs(0)).to_tuple()), expected) <= atol, f"{name}: return_dict changes the output"

    pipe.save_pretrained(tmp_dir / "saved")
    saved = tmp_dir / "saved"
    assert (saved / CHECKSUMS_NAME).is_file(), f"{name}.save_pretrained wrote no {CHECKSUMS_NAME}"
    assert (saved / "README.md").is_file(), f"{name}.save_pretrained wrote no model card"
    card = ModelCard.load(saved / "README.md")
    assert card.data.library_name == "hfgen", f"{name}'s card has library_name {card.data.library_name!r}"
    for loaded in (type(pipe).from_pretrained(saved, **load_kwargs), hfgen.load(saved, **load_kwargs)):
        assert type(loaded) is type(pipe), f"loading {saved} gave a {type(loaded).__name__}"
        loaded.set_progress_bar_config(disable=True)
        assert _max_diff(expected, output(loaded(**inputs(0), return_dict=False))) <= atol, f"{name}: save/load differs"

    tensors = list(getattr(pipe, "_callback_tensor_inputs", None) or [])
    params = inspect.signature(pipe.__call__).parameters
    assert "callback_on_step_end" in params and "callback_on_step_end_tensor_inputs" in params, \
        f"{name}.__call__ lacks Diffusers' callback_on_step_end / callback_on_step_end_tensor_inputs"
    if tensors:
        steps = []

        def record(p, i, t, kwargs):
            assert p is pipe and set(kwargs) == set(tensors), f"{name}: the callback got {sorted(kwargs)}"
            steps.append(i)
            return {}

        pipe(**inputs(0), callback_on_step_end=record, callback_on_step_end_tensor_inputs=tensors)
        assert steps and steps == list(range(len(steps))), f"{name}: callback steps {steps}"
        try:
            pipe(**inputs(0), callback_on_step_end=record, callback_on_step_end_tensor_inputs=["not_a_tensor"])
        except ValueError:
            pass
        else:
            raise AssertionError(f"{name} accepted an unknown name in callback_on_step_end_tensor_inputs")
        key = callback_key or tensors[0]

        class ZeroAtLastStep(PipelineCallback):
            tensor_inputs = [key]

            def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
                if step_index == len(steps) - 1:
                    callback_kwargs[key] = torch.zeros_like(callback_kwargs[key])
                return callback_kwargs

        changed = output(pipe(**inputs(0), return_dict=False, callback_on_step_end=ZeroAtLastStep()))
        assert _max_diff(expected, changed) > 0, f"{name}: a callback's returned {key!r} did not change the result"

    pipe = fresh()
    pipe.to(torch.bfloat16)
    dtypes = {n: c.dtype for n, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert dtypes and set(dtypes.values()) == {torch.bfloat16}, f"{name}.to(torch.bfloat16) left {dtypes}"
    out = output(pipe(**inputs(0), return_dict=False))
    as_array = out.float().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, dtype=np.float64)
    assert np.isfinite(as_array).all(), f"{name} in bfloat16 gives non-finite values"


# ------------------------------------------------------------------------------------------------- trainer


def check_trainer(build: str, tmp_dir: str | os.PathLike, *, build_kwargs: dict | None = None, max_steps: int = 4,
                  save_steps: int = 2, timeout: float = 900) -> None:
    """Exact resume in a fresh process, evaluation, saving and reloading of the trainer that ``build`` makes.

    Args:
        build: ``"module:function"``, importable in a fresh process (the caller's ``sys.path`` is passed on);
            ``function(output_dir, **training_args)`` returns a seeded trainer with a ``train_dataset``, building
            its arguments with the given ``TrainingArguments`` fields (``max_steps``, ``save_strategy``, ...).
        tmp_dir: an empty folder.
        build_kwargs: more keyword arguments of ``function`` (JSON-serializable).
        max_steps, save_steps: the run; one process trains it whole, a second resumes from ``checkpoint-<save_steps>``
            and must end with bitwise the same model and ``checkpointed_modules()`` (CPU, one thread).
    """
    import torch
    from safetensors.torch import load_file

    import hfgen
    from hfgen.hub import CHECKSUMS_NAME, MARKER_NAMES

    tmp_dir = Path(tmp_dir)
    spec = {"build": build, "kwargs": build_kwargs or {}, "max_steps": max_steps, "save_steps": save_steps}
    whole = _run_worker({**spec, "output_dir": str(tmp_dir / "whole")}, timeout)
    checkpoint = tmp_dir / "whole" / f"checkpoint-{save_steps}"
    assert checkpoint.is_dir(), f"the run wrote no {checkpoint.name} (save_strategy='steps', save_steps={save_steps})"
    (tmp_dir / "resumed").mkdir()
    shutil.copytree(checkpoint, tmp_dir / "resumed" / checkpoint.name)
    resumed = _run_worker({**spec, "output_dir": str(tmp_dir / "resumed"),
                           "resume": str(tmp_dir / "resumed" / checkpoint.name)}, timeout)
    a, b, start = load_file(whole["final"]), load_file(resumed["final"]), load_file(whole["initial"])
    assert a.keys() == b.keys(), f"the resumed run's state has other tensors: {sorted(a.keys() ^ b.keys())[:5]}"
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"resuming in a fresh process changed {len(differ)} of {len(a)} tensors, e.g. {differ[:3]}"
    assert any(not torch.equal(start[k], a[k]) for k in start), "training did not change the model"
    after = {s: v for s, v in whole["losses"].items() if int(s) > save_steps}
    assert after and after == {s: resumed["losses"][s] for s in after}, \
        f"the resumed losses differ: {after} vs {resumed['losses']}"

    trainer = _build(build, tmp_dir / "direct", build_kwargs or {}, max_steps=1, save_strategy="no")
    metrics = trainer.evaluate(eval_dataset=trainer.eval_dataset or trainer.train_dataset)
    finite = [k for k, v in metrics.items() if k.startswith("eval_") and isinstance(v, float) and math.isfinite(v)]
    assert finite, f"evaluate() reported no finite eval_ metric: {metrics}"

    saved = tmp_dir / "direct" / "saved"
    trainer.save_model(str(saved))
    assert not (saved / "training_args.bin").exists(), "save_model wrote the pickled training_args.bin"
    args = json.loads((saved / "training_args.json").read_text())
    assert args.get("max_steps") == 1, "training_args.json does not hold the trainer's arguments"
    assert (saved / CHECKSUMS_NAME).is_file(), f"save_model wrote no {CHECKSUMS_NAME}"
    assert (saved / "README.md").is_file(), "save_model wrote no model card"
    from huggingface_hub import ModelCard

    card = ModelCard.load(saved / "README.md").data
    assert card.library_name == "hfgen" and card.to_dict().get("hfgen_method") == trainer.method_name, card

    model = trainer.accelerator.unwrap_model(trainer.model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    trainer.load_saved_weights(model, str(saved))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]
    assert not changed, f"load_saved_weights did not restore {changed[:3]}"
    if any((saved / n).is_file() for n in MARKER_NAMES):
        hfgen.load(saved)


def _build(build: str, output_dir: Path, kwargs: dict, **training_args):
    from hfgen.registry import _import_object

    return _import_object(build)(str(output_dir), **kwargs, **training_args)


def _run_worker(spec: dict, timeout: float) -> dict:
    Path(spec["output_dir"]).mkdir(parents=True, exist_ok=True)
    spec_path = Path(spec["output_dir"]) / "conformance_spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("PYTHONHASHSEED", None)  # a fresh process with its own hash seed, as a user's second run
    result = subprocess.run([sys.executable, "-m", "hfgen.testing.conformance", str(spec_path)], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"the training process failed:\n{(result.stdout + result.stderr)[-4000:]}"
    return json.loads((Path(spec["output_dir"]) / "conformance_result.json").read_text())


def _state(trainer) -> dict:
    model = trainer.accelerator.unwrap_model(trainer.model)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    for name, module in trainer.checkpointed_modules().items():
        state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _worker(spec_path: str) -> None:
    """One training run of [`check_trainer`], in its own process."""
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["output_dir"])
    trainer = _build(spec["build"], out, spec["kwargs"], max_steps=spec["max_steps"], save_strategy="steps",
                     save_steps=spec["save_steps"], logging_steps=1)
    save_file({k: v for k, v in _state(trainer).items() if k.startswith("model.")}, out / "initial.safetensors")
    trainer.train(resume_from_checkpoint=spec.get("resume"))
    save_file(_state(trainer), out / "final.safetensors")
    losses = {str(log["step"]): log["loss"] for log in trainer.state.log_history if "loss" in log}
    (out / "conformance_result.json").write_text(json.dumps({
        "final": str(out / "final.safetensors"), "initial": str(out / "initial.safetensors"), "losses": losses}))


if __name__ == "__main__":
    _worker(sys.argv[1])
