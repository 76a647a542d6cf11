"""What every hfgen trainer shares, written once (TRL's `_BaseTrainer` pattern).

[`HfgenTrainerMixin`] goes first among a trainer's bases (``class DDOTrainer(HfgenTrainerMixin, Trainer)``). It
holds [`~hfgen.trainers.checkpointing.CheckpointingMixin`] (non-finite loss, atomic saves, checksummed checkpoints,
checked resume) and:

- ``create_model_card(model_name, dataset_name, tags)`` with TRL's signature, rendering the card of the trainer's
  method (``method_name``; paper, citation and tags come from its manifest ``hfgen/methods/<name>.py``);
- saving and loading: a trainer whose artifact is a Diffusers pipeline returns it from ``pipeline()`` and is
  saved with the pipeline's ``save_pretrained`` (each component in its own subfolder, ``model_index.json``);
  any other model with its own ``save_pretrained`` at the top of the folder. Checkpoints are reloaded from the
  same layout, strictly (every weight matched), so a resumed run and [`~transformers.Trainer.load_best_model_at_end`]
  read exactly what was written;
- the arguments as ``training_args.json`` (never the pickled ``training_args.bin``), and Hub pushes
  (``push_to_hub``, the checkpoint pushes of ``push_to_hub=True``) that upload no pickle ([`PICKLE_PATTERNS`]);
- metrics per mode (``self._metrics["train" | "eval"][name]`` lists, as TRL's trainers keep them), averaged into
  one ``log`` call of the same mode, so evaluation metrics never reach a training log (a TRL trainer below, which
  keeps and logs them itself, keeps its own ``log`` and ``prediction_step``);
- a default ``prediction_step`` that returns the loss (for trainers with no logits to gather);
- [`check_args`], the argument check every trainer starts with;
- ``peft_config=`` as TRL trainers take it: a transformers model is wrapped with ``peft.get_peft_model``, a
  Diffusers model that supports adapters gets ``model.add_adapter(peft_config)``; saves and checkpoints then hold
  the adapter only (``adapter_model.safetensors`` for [`~peft.PeftModel.from_pretrained`], Diffusers'
  ``pytorch_lora_weights.safetensors`` for ``load_lora_adapter``), and resume restores it.

Private ``transformers.Trainer`` methods overridden (the whole list, here and in ``checkpointing.py``; everything
else goes through public methods and callbacks, and no module global is swapped):

- ``_save``: hfgen's saving layout and ``training_args.json``; the one method ``save_model`` calls with the state
  dict already gathered (FSDP, DeepSpeed), and transformers' own version pickles the arguments with ``torch.save``.
- ``_load_from_checkpoint``: reads that layout back on resume; transformers' version knows only its own file names.
- ``_load_best_model``: the same for ``load_best_model_at_end``, which transformers loads with its own file names.
- ``_push_from_checkpoint``: the checkpoint pushes of ``push_to_hub=True``; transformers' version pickles the
  arguments and uploads the optimizer, scheduler and RNG pickles, and ``_save_checkpoint`` calls it directly.
- ``_save_optimizer_and_scheduler`` / ``_load_optimizer_and_scheduler`` (``checkpointing.py``): a trainer's extra
  training state (an EMA, a buffered rollout) must be in the checkpoint before ``trainer_state.json`` marks it
  complete and be restored before the first resumed step; no callback event falls between those points (TRL's
  ``GRPOTrainer`` overrides the same method for the same reason).

A trainer adds its own state through ``checkpointed_modules`` / ``save_training_state`` / ``load_training_state``,
never by overriding these. Beyond them only NFT overrides private methods, the hooks TRL's ``GRPOTrainer`` offers its
subclasses (``_compute_loss``, ``_generate_and_score_completions``, ``_calculate_rewards``) and ``_get_train_sampler``
(its sampler made resumable), documented in ``nft/nft_trainer.py``.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import is_peft_model
from transformers import PreTrainedModel, Trainer, TrainingArguments

from hfgen.hub import CHECKSUMS_NAME, PICKLE_SUFFIXES, write_checksums

from .checkpointing import CheckpointingMixin, committed_save
from .utils import add_adapter, is_adapted_diffusers_model

TRAINING_ARGS_JSON = "training_args.json"
DIFFUSERS_LORA_NAME = "pytorch_lora_weights.safetensors"
# never uploaded by a trainer's Hub pushes: pickles (a checkpoint's optimizer/scheduler/RNG state, `*.bin`)
PICKLE_PATTERNS = ["*" + suffix for suffix in PICKLE_SUFFIXES]

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


def save_training_args(args: TrainingArguments, folder: str | os.PathLike) -> None:
    """Write ``args`` as ``training_args.json`` (``TrainingArguments.to_json_string``, tokens redacted)."""
    Path(folder, TRAINING_ARGS_JSON).write_text(args.to_json_string(), encoding="utf-8")


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


def _checkpoint_model_files(checkpoint_folder: str) -> list[str]:
    """What a checkpoint push copies to ``output_dir`` (transformers' list, safetensors only): the config, the
    generation config, the weights (and their shards) and a PEFT adapter."""
    import json

    from transformers.utils import (
        ADAPTER_CONFIG_NAME,
        ADAPTER_SAFE_WEIGHTS_NAME,
        CONFIG_NAME,
        GENERATION_CONFIG_NAME,
        SAFE_WEIGHTS_INDEX_NAME,
        SAFE_WEIGHTS_NAME,
    )

    names = [CONFIG_NAME, GENERATION_CONFIG_NAME, SAFE_WEIGHTS_NAME, ADAPTER_CONFIG_NAME, ADAPTER_SAFE_WEIGHTS_NAME]
    index = os.path.join(checkpoint_folder, SAFE_WEIGHTS_INDEX_NAME)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            names += [SAFE_WEIGHTS_INDEX_NAME, *sorted(set(json.load(f)["weight_map"].values()))]
    return [name for name in names if os.path.isfile(os.path.join(checkpoint_folder, name))]


class HfgenTrainerMixin(CheckpointingMixin):
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
                    kwargs["model"] = add_adapter(kwargs["model"], peft_config)
                else:
                    args = (add_adapter(args[0], peft_config), *args[1:])
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

    @classmethod
    def _library_trainer(cls) -> type:
        """The transformers or TRL trainer class below the mixins (``Trainer``, ``GRPOTrainer``, ...)."""
        return next(c for c in cls.__mro__ if c.__module__.startswith(("transformers.", "trl.")))

    def _library_takes_peft_config(self) -> bool:
        """Whether the library trainer below accepts ``peft_config`` itself (TRL's do)."""
        import inspect

        return "peft_config" in inspect.signature(self._library_trainer().__init__).parameters

    # ------------------------------------------------------------------------------------------- metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averages of this mode's recorded metrics (``eval_``-prefixed in evaluation), then log once.

        A recorded value may be a float or a 0-dim tensor left on the device: a training step then never waits for
        the device to report a metric, and each average is read back once, here, at logging time. A TRL trainer
        below that averages its own ``_metrics`` (``GRPOTrainer``) logs them its way."""
        if self._library_trainer().log is not Trainer.log:
            return super().log(logs, start_time)
        mode = "train" if self.model.training else "eval"
        metrics = {key: float(sum(values) / len(values)) for key, values in self._metrics[mode].items() if values}
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        super().log({**logs, **metrics}, start_time)
        self._metrics[mode].clear()

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation reports the training loss on the eval batch (there are no logits to gather); a TRL trainer
        below with its own ``prediction_step`` (``GRPOTrainer``) evaluates its way."""
        if self._library_trainer().prediction_step is not Trainer.prediction_step:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
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
        if is_adapted_diffusers_model(model):  # the adapter only, in Diffusers' LoRA format
            if not self.args.should_save:
                return
            os.makedirs(output_dir, exist_ok=True)
            model.save_lora_adapter(output_dir, safe_serialization=True)
        elif pipeline is None and (isinstance(model, PreTrainedModel) or is_peft_model(model)
                                   or not hasattr(model, "save_pretrained")):
            self._save_transformers_model(output_dir, state_dict)
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

    def _save_transformers_model(self, output_dir: str, state_dict: dict | None) -> None:
        """What ``Trainer._save`` writes but the pickled arguments: ``save_pretrained`` of a transformers or PEFT model
        (sharded weights, adapters; every rank joins when the model was sharded at load time), else the bare state
        dict as ``model.safetensors``; then the tokenizer."""
        import safetensors.torch
        from transformers.utils import SAFE_WEIGHTS_NAME

        should_save = self.args.should_save
        if not should_save and not getattr(self, "is_distributed_loading_by_transformers", False):
            return
        if should_save:
            os.makedirs(output_dir, exist_ok=True)
        unwrapped = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if isinstance(self.model, PreTrainedModel) or is_peft_model(self.model):
            self.model.save_pretrained(output_dir, state_dict=state_dict, is_main_process=should_save)
        elif isinstance(unwrapped, PreTrainedModel) or is_peft_model(unwrapped):
            state_dict = self.model.state_dict() if state_dict is None else state_dict
            unwrapped.save_pretrained(output_dir, state_dict=state_dict, is_main_process=should_save)
        elif should_save:
            state_dict = self.model.state_dict() if state_dict is None else state_dict
            safetensors.torch.save_file(state_dict, os.path.join(output_dir, SAFE_WEIGHTS_NAME), metadata={"format": "pt"})
        if not should_save:
            return
        tokenizer = self.processing_class
        if tokenizer is None:
            tokenizer = getattr(self.data_collator, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """``Trainer.save_model``, committed atomically ([`~hfgen.trainers.checkpointing.committed_save`]); the model
        card is rendered only once the weights are committed to ``output_dir``, and a card that fails to render is a
        warning naming its template, never a lost save."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        token = _PENDING_CARDS.set([])
        try:
            with committed_save(self, output_dir) as folder:
                super().save_model(folder, _internal_call=True)
            pending = _PENDING_CARDS.get()
        finally:
            _PENDING_CARDS.reset(token)
        if pending:
            self._create_model_card_or_warn(output_dir)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _create_model_card_or_warn(self, output_dir: str) -> None:
        try:
            self.create_model_card(output_dir=output_dir)
        except Exception as err:
            from hfgen.hub.cards import card_failure

            warnings.warn(card_failure(type(self).__name__, output_dir, self.method_name, err), stacklevel=3)

    # ----------------------------------------------------------------------------------------------- Hub

    def _upload_folder(self, folder: str, commit_message: str, ignore_patterns: tuple[str, ...] = (), **kwargs):
        """``HfApi.upload_folder`` of ``folder`` to this trainer's repo, never uploading a pickle."""
        from huggingface_hub import HfApi

        from hfgen import __version__

        api = HfApi(library_name="hfgen", library_version=__version__)
        kwargs.setdefault("token", self.args.hub_token)
        kwargs.setdefault("revision", self.args.hub_revision)
        return api.upload_folder(repo_id=self.hub_model_id, folder_path=folder, commit_message=commit_message,
                                 ignore_patterns=[*ignore_patterns, *PICKLE_PATTERNS], **kwargs)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """``Trainer.push_to_hub`` (same arguments; ``kwargs`` go to [`create_model_card`]), never uploading a pickle
        (see [`PICKLE_PATTERNS`])."""
        args = self.args
        self.callback_handler.on_push_begin(args, self.state, self.control)
        model_name = kwargs.pop("model_name", None)
        if model_name is None and args.should_save:
            model_name = Path(args.output_dir).name if args.hub_model_id is None else args.hub_model_id.split("/")[-1]
        token = token if token is not None else args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)  # on every process: a sharded model is gathered
        if not self.is_world_process_zero():
            return None
        model_tags = getattr(self.model, "model_tags", None) or []
        if model_tags:
            tags = kwargs.get("tags") or []
            tags = [tags] if isinstance(tags, str) else list(tags)
            kwargs["tags"] = tags + [tag for tag in model_tags if tag not in tags]
        self.create_model_card(model_name=model_name, **kwargs)
        self._finish_current_push()
        return self._upload_folder(args.output_dir, commit_message, ("_*", "checkpoint-*"), token=token,
                                   revision=revision if revision is not None else args.hub_revision,
                                   run_as_future=not blocking)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        from transformers.trainer_utils import HubStrategy, SaveStrategy
        from transformers.utils import PushInProgress

        args = self.args
        if not self.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
            return
        if not args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return  # the previous push is still running
        self.callback_handler.on_push_begin(args, self.state, self.control)
        output_dir = args.output_dir
        manifest = Path(output_dir) / CHECKSUMS_NAME
        listed = manifest.is_file()
        if listed:  # it lists the previous weights: never push a stale list
            manifest.unlink()
        for name in _checkpoint_model_files(checkpoint_folder):  # the new weights, without gathering them again
            shutil.copy(os.path.join(checkpoint_folder, name), os.path.join(output_dir, name))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        save_training_args(args, output_dir)
        if listed:
            write_checksums(output_dir)
        if args.save_strategy == SaveStrategy.STEPS:
            message = f"Training in progress, step {self.state.global_step}"
        else:
            message = f"Training in progress, epoch {int(self.state.epoch)}"
        jobs = [self._upload_folder(output_dir, message, ("_*", "checkpoint-*"), run_as_future=True)]
        if args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            in_repo = "last-checkpoint" if args.hub_strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name
            jobs.append(self._upload_folder(checkpoint_folder, message + ", checkpoint", path_in_repo=in_repo,
                                            run_as_future=True))
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        if is_adapted_diffusers_model(model):
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
