"""What every hfgen trainer shares, written once (TRL's `_BaseTrainer` pattern).

[`HfgenTrainerMixin`] goes first among a trainer's bases (``class DDOTrainer(HfgenTrainerMixin, Trainer)``). It
holds the guards of [`~hfgen.guards.GuardedTrainerMixin`] (non-finite loss, atomic saves, checked resume) and:

- ``create_model_card(model_name, dataset_name, tags)`` with TRL's signature, rendering the card of the trainer's
  method (``method_name``; paper, citation and tags come from its manifest ``hfgen/methods/<name>.py``);
- saving and loading: a trainer whose artifact is a Diffusers pipeline returns it from ``pipeline()`` and is
  saved with the pipeline's ``save_pretrained`` (each component in its own subfolder, ``model_index.json``);
  any other model with its own ``save_pretrained`` at the top of the folder. Checkpoints are reloaded from the
  same layout, strictly (every weight matched), so a resumed run and [`~transformers.Trainer.load_best_model_at_end`]
  read exactly what was written;
- the arguments as ``training_args.json`` (never the pickled ``training_args.bin``, which neither a save nor a Hub
  push writes);
- metrics per mode (``self._metrics["train" | "eval"][name]`` lists, as TRL's trainers keep them), averaged into
  one ``log`` call of the same mode, so evaluation metrics never reach a training log;
- a default ``prediction_step`` that returns the loss (for trainers with no logits to gather);
- [`check_args`], the argument check every trainer starts with;
- ``peft_config=`` as TRL trainers take it: a transformers model is wrapped with ``peft.get_peft_model``, a
  Diffusers model that supports adapters gets ``model.add_adapter(peft_config)``; saves and checkpoints then hold
  the adapter only (``adapter_model.safetensors`` for [`~peft.PeftModel.from_pretrained`], Diffusers'
  ``pytorch_lora_weights.safetensors`` for ``load_lora_adapter``), and resume restores it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import is_peft_model
from transformers import PreTrainedModel, TrainingArguments

from hfgen.guards import GuardedTrainerMixin

TRAINING_ARGS_JSON = "training_args.json"


# inside a save_model call: the folders whose card waits until the weights are committed
_PENDING_CARDS: contextvars.ContextVar[list | None] = contextvars.ContextVar("hfgen_pending_cards", default=None)


def check_args(args, config_class: type, default_output_dir: str | None = None):
    """``args`` if it is a ``config_class``; ``config_class(default_output_dir)`` if it is ``None`` and a default is
    given; a ``ValueError`` naming ``args`` otherwise."""
    if args is None and default_output_dir is not None:
        return config_class(output_dir=default_output_dir)
    if not isinstance(args, config_class):
        article = "an" if config_class.__name__[0] in "AEIOU" else "a"
        raise ValueError(f"`args` must be {article} {config_class.__name__}, got {type(args).__name__}.")
    return args


def to_training_device(model, device):
    """``model`` moved to the training ``device``, unless it is sharded with ``device_map`` (``hf_device_map`` set):
    such a model already sits on its devices, and ``.to`` would break (or undo) the sharding."""
    if getattr(model, "hf_device_map", None):
        return model
    return model.to(device)


def save_training_args(args: TrainingArguments, folder: str | os.PathLike) -> None:
    """Write ``args`` as ``training_args.json`` (``TrainingArguments.to_json_string``, tokens redacted)."""
    Path(folder, TRAINING_ARGS_JSON).write_text(args.to_json_string(), encoding="utf-8")


@contextlib.contextmanager
def _training_args_as_json():
    """Inside, ``transformers.Trainer``'s ``torch.save(args, ".../training_args.bin")`` writes JSON instead."""
    import transformers.trainer as trainer_module

    torch_save = trainer_module.torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, TrainingArguments) and isinstance(f, str | os.PathLike):
            return save_training_args(obj, os.path.dirname(f))
        return torch_save(obj, f, *args, **kwargs)

    trainer_module.torch.save = save
    try:
        yield
    finally:
        trainer_module.torch.save = torch_save


# never uploaded by a trainer's Hub pushes: pickles (a checkpoint's optimizer/scheduler/RNG state, `*.bin`)
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt"]


@contextlib.contextmanager
def _no_pickle_uploads():
    """Inside, ``transformers.Trainer``'s Hub uploads (``push_to_hub``, checkpoint pushes) skip every pickle:
    ``hub_strategy="checkpoint"`` would otherwise upload ``optimizer.pt``, ``scheduler.pt`` and ``rng_state.pth``."""
    import transformers.trainer as trainer_module

    hf_api = trainer_module.hf_api

    class NoPickleApi:
        def __init__(self, api):
            self._api = api

        def __getattr__(self, name):
            return getattr(self._api, name)

        def upload_folder(self, *args, ignore_patterns=None, **kwargs):
            ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
            return self._api.upload_folder(*args, ignore_patterns=ignore + PICKLE_PATTERNS, **kwargs)

    trainer_module.hf_api = lambda *args, **kwargs: NoPickleApi(hf_api(*args, **kwargs))
    try:
        yield
    finally:
        trainer_module.hf_api = hf_api


DIFFUSERS_LORA_NAME = "pytorch_lora_weights.safetensors"


def _is_adapted_diffusers_model(model) -> bool:
    return not isinstance(model, PreTrainedModel) and hasattr(model, "save_lora_adapter") and bool(
        getattr(model, "peft_config", None))


def _add_adapter(model, peft_config):
    """``model`` with a PEFT adapter: ``get_peft_model`` for a transformers model, ``add_adapter`` (in place) for a
    Diffusers model; a ``ValueError`` naming ``peft_config`` for a model that supports neither."""
    if isinstance(model, PreTrainedModel):
        from peft import get_peft_model

        return get_peft_model(model, peft_config)
    if hasattr(model, "add_adapter") and hasattr(model, "save_lora_adapter"):
        model.add_adapter(peft_config)
        return model
    raise ValueError(f"`peft_config` needs a transformers model or a Diffusers model with adapter support "
                     f"(PeftAdapterMixin, e.g. UNet2DConditionModel); {type(model).__name__} has neither.")


def _hub_id(name: str | None) -> str | None:
    """``name`` if it is a Hub id (not a local folder), else ``None``."""
    return name if name and not os.path.isdir(name) and not os.path.isabs(name) else None


def _base_model_id(model) -> str | None:
    """The Hub id the model was loaded from (TRL's rule: ``None`` for a local folder or a model built from a config)."""
    config = getattr(model, "config", None)
    name = config.get("_name_or_path") if isinstance(config, dict) else getattr(config, "_name_or_path", None)
    return name if name and not os.path.isdir(name) else None


def _check_activation_checkpointing(model, args) -> None:
    """``activation_checkpointing`` (``gradient_checkpointing``) on a model transformers cannot checkpoint, e.g. a
    Diffusers model, would fail only when training starts: refuse it here, naming the model's own switch."""
    if not getattr(args, "activation_checkpointing", False) or not isinstance(model, torch.nn.Module):
        return
    if hasattr(model, "activation_checkpointing_enable") or hasattr(model, "gradient_checkpointing_enable"):
        return
    instead = ("call `model.enable_gradient_checkpointing()` (Diffusers) before building the trainer"
               if hasattr(model, "enable_gradient_checkpointing") else "this model has no checkpointing switch")
    raise ValueError(f"`activation_checkpointing` (`gradient_checkpointing`) needs a model with "
                     f"`activation_checkpointing_enable` (transformers); {type(model).__name__} has none: {instead}, "
                     "and leave the argument False.")


class HfgenTrainerMixin(GuardedTrainerMixin):
    """Model cards, saving and loading, ``training_args`` as JSON, metrics per mode and a loss-returning
    ``prediction_step`` for a ``transformers.Trainer`` (or TRL trainer) subclass.

    Class attributes a trainer sets:
        method_name (`str`): the registered method whose card and paper the trainer's artifacts carry; resolved
            when the trainer is created (an unknown name is a ``ValueError`` then, not after training; a card
            template that cannot be loaded is a warning then, and saves hold the weights without a card).
        card_args (`tuple[str, ...]`): the ``args`` fields listed in the card's training configuration.

    Hooks a trainer may override: ``pipeline()``, ``save_extras(output_dir)``, ``card_training_config()``,
    ``card_tags()`` and ``card_vars()`` (extra variables of the method's card template).
    """

    method_name: str | None = None
    card_args: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        import inspect

        _check_activation_checkpointing(kwargs["model"] if "model" in kwargs else args[0] if args else None,
                                        kwargs["args"] if "args" in kwargs else args[1] if len(args) > 1 else None)
        # a plain name is checked before anything is built; a property (the method depends on the model) after
        computed = isinstance(inspect.getattr_static(type(self), "method_name", None), property)
        if not computed:
            self._resolve_method()
        if "peft_config" in kwargs and not self._library_takes_peft_config():
            peft_config = kwargs.pop("peft_config")
            if peft_config is not None:
                if "model" in kwargs:
                    kwargs["model"] = _add_adapter(kwargs["model"], peft_config)
                else:
                    args = (_add_adapter(args[0], peft_config), *args[1:])
        super().__init__(*args, **kwargs)
        from hfgen.validation import check_not_empty

        check_not_empty("train_dataset", self.train_dataset)  # else torch's "num_samples=0" when training starts
        if computed:
            self._resolve_method()
        if not hasattr(self, "_metrics"):  # TRL trainers create the same structure themselves
            self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    def _resolve_method(self) -> None:
        """Look ``method_name`` and its card template up now, before any model is built or trained."""
        from hfgen.hub import card_template_problem
        from hfgen.registry import get_method

        name = self.method_name
        try:
            if not isinstance(name, str):
                raise KeyError(f"it must be the name of a registered hfgen method, got {name!r}.")
            get_method(name)
        except (KeyError, ImportError) as err:
            raise ValueError(f"`method_name` of {type(self).__name__}: {err.args[0] if err.args else err}") from None
        problem = card_template_problem(name)
        if problem is not None:
            warnings.warn(f"{type(self).__name__}: {problem}; saves will hold the weights but no model card.",
                          stacklevel=3)

    def _library_takes_peft_config(self) -> bool:
        """Whether the library trainer below accepts ``peft_config`` itself (TRL's do)."""
        import inspect

        library = next(c for c in type(self).__mro__ if c.__module__.startswith(("transformers.", "trl.")))
        return "peft_config" in inspect.signature(library.__init__).parameters

    # ------------------------------------------------------------------------------------------- metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averages of this mode's recorded metrics (``eval_``-prefixed in evaluation), then log once.

        A recorded value may be a float or a 0-dim tensor left on the device: a training step then never waits for
        the device to report a metric, and each average is read back once, here, at logging time."""
        mode = "train" if self.model.training else "eval"
        metrics = {key: float(sum(values) / len(values)) for key, values in self._metrics[mode].items() if values}
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        super().log({**logs, **metrics}, start_time)
        self._metrics[mode].clear()

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation reports the training loss on the eval batch (there are no logits to gather)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # -------------------------------------------------------------------------------------------- saving

    def pipeline(self):
        """The trained model as a Diffusers pipeline (sharing the trainer's modules), if that is the artifact."""
        return None

    def save_extras(self, output_dir: str) -> None:
        """Write what the artifact holds beyond the model or pipeline (e.g. a noise scheduler); nothing by default."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        pipeline = self.pipeline()
        model = self.accelerator.unwrap_model(self.model)
        if _is_adapted_diffusers_model(model):  # the adapter only, in Diffusers' LoRA format
            if not self.args.should_save:
                return
            os.makedirs(output_dir, exist_ok=True)
            model.save_lora_adapter(output_dir, safe_serialization=True)
        elif pipeline is None and (isinstance(model, PreTrainedModel) or is_peft_model(model)
                                   or not hasattr(model, "save_pretrained")):
            with _training_args_as_json():  # transformers' own saving (PEFT adapters, sharded weights, tokenizer)
                super()._save(output_dir, state_dict=state_dict)
            if not self.args.should_save:
                return
        else:
            if not self.args.should_save:
                return
            os.makedirs(output_dir, exist_ok=True)
            (pipeline if pipeline is not None else model).save_pretrained(output_dir)  # safetensors by default
        save_training_args(self.args, output_dir)
        self.save_extras(output_dir)
        pending = _PENDING_CARDS.get()
        if pending is None:
            self._create_model_card_or_warn(output_dir)
        else:  # inside save_model: written once the weights are committed
            pending.append(output_dir)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """``Trainer.save_model``; the model card is rendered only once the weights are committed to ``output_dir``,
        and a card that fails to render is a warning naming its template, never a lost save."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        token = _PENDING_CARDS.set([])
        try:
            super().save_model(output_dir, _internal_call)
            pending = _PENDING_CARDS.get()
        finally:
            _PENDING_CARDS.reset(token)
        if pending:
            self._create_model_card_or_warn(output_dir)

    def _create_model_card_or_warn(self, output_dir: str) -> None:
        try:
            self.create_model_card(output_dir=output_dir)
        except Exception as err:
            from hfgen.hub.cards import card_failure

            warnings.warn(card_failure(type(self).__name__, output_dir, self.method_name, err), stacklevel=3)

    def _push_from_checkpoint(self, checkpoint_folder):
        with _training_args_as_json(), _no_pickle_uploads():
            super()._push_from_checkpoint(checkpoint_folder)

    def push_to_hub(self, *args, **kwargs):
        """``Trainer.push_to_hub``, never uploading a pickle (see [`PICKLE_PATTERNS`])."""
        with _no_pickle_uploads():
            return super().push_to_hub(*args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        if _is_adapted_diffusers_model(model):
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            state = load_file(os.path.join(resume_from_checkpoint, DIFFUSERS_LORA_NAME))
            result = set_peft_model_state_dict(model, {k.removeprefix("unet."): v for k, v in state.items()})
            if result.unexpected_keys:
                raise ValueError(f"{resume_from_checkpoint} holds adapter weights this model lacks: "
                                 f"{result.unexpected_keys[:3]}")
            return None
        if (self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(model, "peft_config")  # sharded, adapters
                or not hasattr(model, "from_pretrained") and not hasattr(model, "load_weights")):  # a bare state dict
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.load_saved_weights(model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    def load_saved_weights(self, model, folder: str) -> None:
        """Load the weights that ``_save`` wrote to ``folder`` into ``model`` in place, strictly.

        ``from_pretrained`` reads the folder (or the model's subfolder of a saved pipeline), so transformers'
        checkpoint conversion mappings apply; a bare ``load_state_dict`` of the file would skip renamed weights.
        """
        pipeline = self.pipeline()
        if pipeline is not None:
            folder = os.path.join(folder, next(name for name, c in pipeline.components.items() if c is model))
        if hasattr(model, "load_weights"):  # a model of several parts with its own loader
            return model.load_weights(folder)
        dtype = next(model.parameters()).dtype
        loaded = type(model).from_pretrained(folder, **({"dtype": dtype} if isinstance(model, PreTrainedModel) else {}))
        model.load_state_dict(loaded.state_dict())

    # ------------------------------------------------------------------------------------------- cards

    def card_training_config(self) -> dict[str, Any]:
        """The training configuration shown in the card: ``card_args`` read from ``args``."""
        return {key: getattr(self.args, key) for key in self.card_args}

    def card_tags(self) -> list[str]:
        """Hub tags beyond the method's own (its manifest adds ``hfgen``, ``hfgen-<name>`` and its tags)."""
        return []

    def card_vars(self) -> dict[str, Any]:
        """Extra variables of the method's card template (and ``base_model``, to replace the config's)."""
        return {}

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          tags: str | list[str] | None = None, *, output_dir: str | None = None) -> None:
        """Write the card of ``method_name`` (``model_cards/<method>.md``) as ``README.md``.

        Args:
            model_name (`str`, *optional*): the model's name; defaults to the output folder's name.
            dataset_name (`str`, *optional*): the training data set.
            tags (`str` or `list[str]`, *optional*): extra Hub tags.
            output_dir (`str`, *optional*): where to write it; defaults to ``args.output_dir``.
        """
        if not self.is_world_process_zero():
            return
        from hfgen.hub import save_model_card

        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        model = self.accelerator.unwrap_model(self.model)
        card_vars = {"base_model": _base_model_id(model), **self.card_vars()}
        if is_peft_model(model):  # the folder holds a PEFT adapter: PEFT loads it, on the base it names
            adapter_base = model.peft_config[model.active_adapter].base_model_name_or_path
            card_vars = {**card_vars, "library_name": "peft", "peft_base": adapter_base or None,
                         "base_model": card_vars.get("base_model") or _hub_id(adapter_base)}
            tags = ["peft", str(model.peft_config[model.active_adapter].peft_type).split(".")[-1].lower(), *tags]
        else:
            pipeline = self.pipeline()
            found = pipeline.hfgen_component() if hasattr(pipeline, "hfgen_component") else None
            if found is not None:  # the saved folder is that pipeline: the card shows how to load it
                card_vars.setdefault("pipeline_class", found[1])
        save_model_card(
            output_dir, self.method_name,
            model_name=model_name or Path(os.path.abspath(output_dir)).name,
            datasets=[dataset_name] if dataset_name else None,
            training_config=self.card_training_config(),
            extra_tags=[*self.card_tags(), *tags],
            **card_vars,
        )
