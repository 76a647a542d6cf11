"""MF^2 pretraining (arXiv 2504.10351) as a subclass of ``transformers.Trainer``.

Each example is a face image with its multilevel descriptions (the MFA format): one global
(emotion-level) description and one description per AU. [`MF2DataCollator`] turns a batch
into model inputs; [`MF2Trainer.compute_loss`] is MF^2's ``λ_g L_glob + λ_l L_loc``
([`hfgen.models.mf2.MF2Model`]), and both terms and the two logit scales are logged.
Everything else (optimiser, schedule, checkpointing, resume, logging, multi-process training) is
``Trainer``'s; saving writes the model, the tokenizer and the hfgen model card.
"""

from __future__ import annotations

import torch
from transformers import Trainer

from hfgen.data.faces import pixel_values_from_images

from ..base import HfgenTrainerMixin, check_args
from .mf2_config import MF2TrainingConfig


class MF2DataCollator:
    """Batch MFA-style examples into [`~hfgen.models.mf2.MF2Model`] inputs.

    An example holds ``pixel_values`` (``[C, H, W]``) or ``image`` (PIL / array, resized to
    ``image_size``), ``global_text`` (str) and ``au_texts`` (one str per AU, in the model's AU order).

    Returns ``pixel_values``, ``input_ids``, ``attention_mask`` (``[B, T]``) and ``au_input_ids``,
    ``au_attention_mask`` (``[B, K, T]``).
    """

    def __init__(self, tokenizer, image_size: int | None = None, max_length: int = 64, num_aus: int | None = None):
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.max_length = max_length
        self.num_aus = num_aus

    def _tokenize(self, texts):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if "pixel_values" in examples[0]:
            pixel_values = torch.stack([torch.as_tensor(ex["pixel_values"]) for ex in examples])
        else:
            pixel_values = pixel_values_from_images([ex["image"] for ex in examples], self.image_size)
        batch = {"pixel_values": pixel_values}
        if "global_text" in examples[0]:
            g = self._tokenize([ex["global_text"] for ex in examples])
            batch.update(input_ids=g.input_ids, attention_mask=g.attention_mask)
        if "au_texts" in examples[0]:
            K = self.num_aus or len(examples[0]["au_texts"])
            widths = {len(ex["au_texts"]) for ex in examples}
            if widths != {K}:
                raise ValueError(f"Every example needs {K} `au_texts` (one per AU), got lengths {sorted(widths)}.")
            a = self._tokenize([t for ex in examples for t in ex["au_texts"]])
            batch.update(au_input_ids=a.input_ids.view(len(examples), K, -1),
                         au_attention_mask=a.attention_mask.view(len(examples), K, -1))
        return batch


class MF2Trainer(HfgenTrainerMixin, Trainer):
    """Pretrain [`~hfgen.models.mf2.MF2Model`] on images with multilevel (global + per-AU) descriptions.

    Args:
        model: an ``MF2Model``.
        args: an [`MF2TrainingConfig`].
        processing_class: the description tokenizer (needed unless ``data_collator`` is given).
        data_collator: defaults to [`MF2DataCollator`] at the model's image size.

    Example::

        trainer = MF2Trainer(model=model, args=MF2TrainingConfig("out", max_steps=300), train_dataset=faces,
                             processing_class=tokenizer)
        trainer.train()
        trainer.save_model()   # model.safetensors + config.json + tokenizer + README.md (hfgen card)
    """

    _tag_names = ["hfgen", "mf2"]
    method_name = "mf2"
    card_args = ("global_loss_weight", "local_loss_weight", "learning_rate", "max_steps", "per_device_train_batch_size")

    def __init__(self, model, args: MF2TrainingConfig | None = None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, **kwargs):
        args = check_args(args, MF2TrainingConfig, "mf2-output")
        if data_collator is None:
            if processing_class is None:
                raise ValueError("Pass `processing_class` (the description tokenizer) or a `data_collator`.")
            data_collator = MF2DataCollator(processing_class, image_size=model.config.vision_config.image_size,
                                            max_length=args.max_text_length, num_aus=len(model.config.au_names))
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs, return_loss=True, global_loss_weight=self.args.global_loss_weight,
                        local_loss_weight=self.args.local_loss_weight)
        mode = "train" if model.training else "eval"
        unwrapped = self.accelerator.unwrap_model(model)
        for name in ("loss_global", "loss_local"):
            value = getattr(outputs, name)
            if value is not None:
                self._metrics[mode][name].append(self.accelerator.gather(value.detach()).mean())  # read at logging time
        self._metrics[mode]["logit_scale"].append(unwrapped.logit_scale.detach().exp())
        self._metrics[mode]["local_logit_scale"].append(unwrapped.local_logit_scale.detach().exp())
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def card_vars(self) -> dict:
        config = self.accelerator.unwrap_model(self.model).config
        return {"au_names": config.au_names, "emotion_names": config.emotion_names}
