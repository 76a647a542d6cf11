"""The options contract of a trainer whose config inherits a TRL or transformers config.

A config such as ``NFTConfig(GRPOConfig)`` inherits every field of its parent. Each inherited field is in exactly
one list of the trainer's [`OptionsContract`]:

- *honoured*: it changes training as it does in the parent trainer (the note says through which code path);
- *refused*: set to anything but its default, the config raises a ``ValueError`` naming the field and what the
  trainer uses instead, before any work (a silently ignored field would train something other than what was
  configured);
- *not applicable*: it has no effect here by design (the note says why).

``tests/test_options_contract.py`` walks ``dataclasses.fields()`` of each parent and fails on a field that is in no
list or in several, so a field added by a new TRL or transformers release fails until it is classified.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from transformers import TrainingArguments


def field_notes(note: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), note)


@dataclass(frozen=True)
class OptionsContract:
    """Where each field of ``parent`` stands for one trainer (see the module docstring).

    Args:
        parent (`type`): the dataclass config the trainer's config inherits (``GRPOConfig``, ``TrainingArguments``).
        honoured (`Mapping[str, str]`): field -> the code path that honours it.
        refused (`Mapping[str, str]`): field -> what the trainer uses instead (shown in the error).
        not_applicable (`Mapping[str, str]`): field -> why it has no effect.
    """

    parent: type
    honoured: Mapping[str, str]
    refused: Mapping[str, str]
    not_applicable: Mapping[str, str]

    def problems(self) -> list[str]:
        """Every field of ``parent`` in no list or in several, and every listed name that is not a field."""
        lists = {"honoured": self.honoured, "refused": self.refused, "not_applicable": self.not_applicable}
        fields = [f.name for f in dataclasses.fields(self.parent)]
        found = []
        for name in fields:
            where = [list_name for list_name, notes in lists.items() if name in notes]
            if len(where) != 1:
                found.append(f"`{name}` of {self.parent.__name__} is in {' and '.join(where) or 'no list'}")
        found += [f"`{name}` ({list_name}) is not a field of {self.parent.__name__}"
                  for list_name, notes in lists.items() for name in notes if name not in fields]
        return found

    def check(self, config) -> None:
        """Raise a ``ValueError`` naming the first refused field that ``config`` sets away from its default."""
        for f in dataclasses.fields(config):
            if f.name not in self.refused:
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if getattr(config, f.name) != default:
                raise ValueError(f"`{f.name}` (inherited from {self.parent.__name__}) is not supported by "
                                 f"{type(config).__name__}: {self.refused[f.name]}. Leave it at its default "
                                 f"({default!r}).")

    def with_changes(self, *, parent: type | None = None, honoured: Mapping[str, str] | None = None,
                     refused: Mapping[str, str] | None = None,
                     not_applicable: Mapping[str, str] | None = None) -> OptionsContract:
        """This contract with the given fields moved into (or added to) the given lists: a trainer's departures
        from a shared contract, or the contract of a subclass ``parent`` of this one's parent."""
        moved = {"honoured": dict(honoured or {}), "refused": dict(refused or {}),
                 "not_applicable": dict(not_applicable or {})}
        names = {name for notes in moved.values() for name in notes}
        lists = {list_name: {k: v for k, v in getattr(self, list_name).items() if k not in names} | notes
                 for list_name, notes in moved.items()}
        return OptionsContract(parent or self.parent, **lists)


_LOSS_ONLY_EVALUATION = ("evaluation reports the trainer's loss (a loss-only `prediction_step`): there are no "
                         "logits or labels to gather or to pass to `compute_metrics`")

# transformers.Trainer honours these for any hfgen trainer (hfgen's trainers are Trainer subclasses that replace
# only `compute_loss`, evaluation and saving).
TRAINING_ARGUMENTS_OPTIONS = OptionsContract(
    parent=TrainingArguments,
    honoured={
        **field_notes("transformers.Trainer: optimisation", "learning_rate lr_scheduler_type lr_scheduler_kwargs "
                 "warmup_steps optim optim_args weight_decay adam_beta1 adam_beta2 adam_epsilon optim_target_modules "
                 "gradient_accumulation_steps max_grad_norm per_device_train_batch_size num_train_epochs max_steps "
                 "auto_find_batch_size"),
        **field_notes("transformers.Trainer: precision, memory and compilation", "bf16 fp16 bf16_full_eval fp16_full_eval "
                 "tf32 torch_compile torch_compile_backend torch_compile_mode torch_empty_cache_steps use_cache"),
        **field_notes("transformers.Trainer, for a model with `activation_checkpointing_enable` (transformers); "
                      "refused at trainer construction for other models (a Diffusers model has its own "
                      "`enable_gradient_checkpointing()`)", "activation_checkpointing activation_checkpointing_kwargs "
                      "gradient_checkpointing gradient_checkpointing_kwargs"),
        **field_notes("transformers.Trainer: logging", "logging_strategy logging_steps logging_first_step log_on_each_node "
                 "logging_nan_inf_filter include_num_input_tokens_seen log_level log_level_replica disable_tqdm "
                 "report_to run_name project trackio_space_id trackio_bucket_id trackio_static_space_id "
                 "skip_memory_metrics debug"),
        **field_notes("transformers.Trainer: evaluation schedule (the trainer's loss on `eval_dataset`)",
                 "eval_strategy eval_steps eval_delay per_device_eval_batch_size eval_on_start"),
        **field_notes("transformers.Trainer with hfgen's safetensors saving (trainers/base.py)", "output_dir save_only_model "
                 "save_strategy save_steps save_on_each_node save_total_limit enable_jit_checkpoint "
                 "load_best_model_at_end metric_for_best_model greater_is_better ignore_data_skip "
                 "restore_callback_states_from_checkpoint resume_from_checkpoint"),
        **field_notes("transformers.Trainer: Hub pushes, never uploading a pickle (trainers/base.py)", "push_to_hub "
                 "hub_token hub_private_repo hub_model_id hub_strategy hub_always_push hub_revision"),
        **field_notes("transformers.Trainer: seeds and data loading", "full_determinism seed data_seed dataloader_drop_last "
                 "dataloader_num_workers dataloader_pin_memory dataloader_persistent_workers dataloader_prefetch_factor "
                 "dataloader_multiprocessing_context dataloader_in_order remove_unused_columns train_sampling_strategy "
                 "length_column_name"),
        **field_notes("transformers.Trainer / Accelerate: devices and distributed training", "use_cpu accelerator_config "
                 "parallelism_config ddp_find_unused_parameters ddp_bucket_cap_mb ddp_broadcast_buffers ddp_static_graph "
                 "ddp_backend ddp_timeout fsdp fsdp_config deepspeed local_rank"),
        **field_notes("read by training scripts, as in transformers", "do_train do_eval do_predict"),
    },
    refused={
        "label_smoothing_factor": "the trainer computes its own loss (it is not a cross-entropy over `labels`); "
                                  "transformers' label smoother would never run",
        "neftune_noise_alpha": "NEFTune adds noise to a language model's input embeddings for instruction "
                               "tuning; the trainer's loss is its method's own",
        "use_liger_kernel": "Liger's kernels patch transformers language-model layers and losses, not this "
                            "trainer's model or loss",
        "liger_kernel_config": "Liger's kernels are not used (see `use_liger_kernel`)",
    },
    not_applicable={
        **field_notes(_LOSS_ONLY_EVALUATION, "prediction_loss_only include_for_metrics eval_do_concat_batches "
                 "eval_use_gather_object eval_accumulation_steps batch_eval_metrics label_names"),
        "average_tokens_across_devices": "the trainer's `compute_loss` normalises its own loss and does not take "
                                         "`num_items_in_batch`",
    },
)
