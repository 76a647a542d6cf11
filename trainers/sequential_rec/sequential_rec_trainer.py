"""Training and full-ranking evaluation of a sequential recommender with a side-adapted item encoder.

The model is ``SequentialRecommender(recommender=SASRecModel, item_encoder=IISANModel | CROSSANModel |
BackboneItemEncoder | None)``; the trainer optimises the in-batch softmax loss of the IISAN papers
([`in_batch_softmax_loss`]) and evaluates HR@K / NDCG@K by ranking every item, with each user's
history masked. It is a ``transformers.Trainer``, so ``accelerate launch`` / DDP, logging,
checkpointing and callbacks work as usual; a save writes the recommender (``config.json`` +
``model.safetensors``), the adapter (``item_encoder/adapter_config.json`` +
``adapter_model.safetensors``) and the hfgen model card.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import EarlyStoppingCallback, Trainer

from hfgen.metrics.ranking import hit_rate_at_k, mask_history, ndcg_at_k, target_ranks
from hfgen.trainers.sequential_rec.sequential_rec_config import SequentialRecConfig

from ..base import HfgenTrainerMixin, check_args


class SequentialRecommender(nn.Module):
    """A recommender (``SASRecModel``) over the embeddings of an item encoder (a side adapter, or none).

    Scores are dot products between the user vector and item embeddings.
    """

    def __init__(self, recommender: nn.Module, item_encoder: nn.Module | None = None):
        super().__init__()
        if item_encoder is None and not getattr(recommender.config, "num_items", 0):
            raise ValueError("Without an `item_encoder` the recommender needs its own item table (num_items > 0).")
        if item_encoder is not None and item_encoder.config.embedding_dim != recommender.config.hidden_size:
            raise ValueError(f"The item encoder's `embedding_dim` ({item_encoder.config.embedding_dim}) must equal "
                             f"the recommender's `hidden_size` ({recommender.config.hidden_size}).")
        self.recommender = recommender
        self.item_encoder = item_encoder

    @property
    def num_items(self) -> int:
        return self.item_encoder.num_items if self.item_encoder is not None else self.recommender.config.num_items

    def embed_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        if self.item_encoder is None:
            return self.recommender.embed_items(item_ids)
        return self.item_encoder(item_ids=item_ids).item_embeddings

    def user_vectors(self, item_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.recommender(inputs_embeds=item_embeddings, attention_mask=attention_mask).last_hidden_state

    def forward(self, item_ids: torch.Tensor, **kwargs):
        """Encode each distinct item of the batch once; return ``(user vectors [B, L-1, d], ids, embeddings)``."""
        uniq, inverse = torch.unique(item_ids, return_inverse=True)
        emb = self.embed_items(uniq)  # [C, d]
        users = self.user_vectors(emb[inverse[:, :-1]], (item_ids[:, :-1] != 0).long())
        return users, uniq, inverse, emb

    @torch.no_grad()
    def all_item_embeddings(self, batch_size: int = 1024) -> torch.Tensor:
        ids = torch.arange(self.num_items, device=self.recommender.device)
        return torch.cat([self.embed_items(ids[i:i + batch_size]) for i in range(0, len(ids), batch_size)])

    def save_pretrained(self, folder: str | Path) -> None:
        self.recommender.save_pretrained(folder)
        if self.item_encoder is not None:
            self.item_encoder.save_pretrained(Path(folder) / "item_encoder", model_card=False)

    def load_weights(self, folder: str | Path) -> None:
        """Load weights written by [`save_pretrained`] into this model (in place)."""
        self.recommender.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
        if self.item_encoder is not None:
            state = load_file(str(Path(folder) / "item_encoder" / "adapter_model.safetensors"))
            self.item_encoder.load_state_dict(state, strict=False)


def in_batch_softmax_loss(users: torch.Tensor, item_ids: torch.Tensor, candidates: torch.Tensor,
                          inverse: torch.Tensor, candidate_embeddings: torch.Tensor,
                          log_popularity: torch.Tensor | None = None, negatives: str = "slots") -> torch.Tensor:
    """In-batch softmax cross-entropy of next-item prediction (IISAN §3.4, SASRec-style autoregressive).

    Every real position ``t`` of user ``b`` predicts item ``t + 1`` among the batch's candidates::

        logit(b, t, c) = u_{b,t} . e_c - log p(c)          (logQ correction when ``log_popularity`` is given)

    - ``negatives="slots"`` (official): one candidate per batch slot ``(b', t')``, duplicates kept, so
      an item bought by several users of the batch is several negatives. Each slot is one draw from
      the training interaction distribution ``p``, so ``- log p(c)`` is the sampling-consistent
      (logQ) correction. The target is the user's own next slot.
    - ``negatives="distinct"``: one candidate per distinct item of the batch (``- log p`` is then
      only an approximation of the correction for this sampling).

    Candidates whose item occurs anywhere in user ``b``'s sequence, other than the target slot
    itself, are masked (they are not negatives; ``-1e4`` as in the official code), and so is the
    padding item 0.

    Args:
        users: ``[B, L, d]`` user vectors (position ``t`` has read items ``0..t``).
        item_ids: ``[B, L + 1]`` item ids, left-padded with 0.
        candidates: ``[C]`` distinct ids of the batch; ``inverse``: ``[B, L + 1]`` index of each id in it.
        candidate_embeddings: ``[C, d]`` embeddings of ``candidates``.
        log_popularity: ``[n_items]`` log sampling probability of each item.
        negatives: ``"slots"`` or ``"distinct"``.
    """
    if negatives == "slots":
        B, L1 = item_ids.shape
        cand_ids = item_ids.reshape(-1)  # [B (L+1)]
        cand_emb = candidate_embeddings[inverse.reshape(-1)]
        target = torch.arange(B, device=item_ids.device)[:, None] * L1 + torch.arange(1, L1, device=item_ids.device)
    elif negatives == "distinct":
        cand_ids, cand_emb, target = candidates, candidate_embeddings, inverse[:, 1:]
    else:
        raise ValueError(f"`negatives` must be 'slots' or 'distinct', got {negatives!r}.")
    logits = users @ cand_emb.T  # [B, L, C]
    if log_popularity is not None:
        logits = logits - log_popularity[cand_ids]
    in_sequence = (item_ids[:, :, None] == cand_ids[None, None, :]).any(1) | (cand_ids == 0)[None]  # [B, C]
    is_target = nn.functional.one_hot(target, len(cand_ids)).bool()
    logits = logits.masked_fill(in_sequence[:, None, :] & ~is_target, -1e4)
    valid = item_ids[:, :-1] != 0
    if not valid.any():
        raise ValueError("The batch has no (history item, next item) pair: every training sequence needs >= 2 items.")
    return nn.functional.cross_entropy(logits[valid], target[valid])


class SequentialRecCollator:
    """Stacks ``item_ids`` (fixed length), ``labels``, and right-pads ``history`` with 0."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = {"item_ids": torch.tensor([f["item_ids"] for f in features], dtype=torch.long)}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
            width = max(len(f["history"]) for f in features)
            batch["history"] = torch.tensor([f["history"] + [0] * (width - len(f["history"])) for f in features])
        return batch


class SequentialRecTrainer(HfgenTrainerMixin, Trainer):
    """Trainer for sequential recommendation with an (optionally side-adapted) item encoder.

    Takes ``transformers.Trainer``'s arguments in its order, ``(model, args, train_dataset, eval_dataset, ...)``,
    plus the keywords ``item_encoder`` and ``item_popularity``:

    Args:
        model: the recommender, a [`~hfgen.models.SASRecModel`] (or a ready
            [`SequentialRecommender`]).
        args: a [`SequentialRecConfig`].
        train_dataset / eval_dataset: from ``RecommendationData.leave_one_out`` (``eval_dataset`` may be a dict of
            named sets: metrics are then ``eval_<name>_hr@K``).
        item_encoder (keyword): a side adapter ([`~hfgen.adapters.IISANModel`], ``CROSSANModel``) or a
            baseline ``BackboneItemEncoder``, with its item table or cache set; ``None`` for ID-based SASRec.
        item_popularity (keyword): ``[n_items]`` training interaction counts, for the logQ correction.

    The former order ``(model, item_encoder, args, ...)`` still works, with a ``FutureWarning``.
    ``evaluate()`` returns ``{"eval_hr@10", "eval_ndcg@10", ...}``; the best model (``load_best_model_at_end``,
    early stopping) is chosen by validation HR@K unless ``metric_for_best_model`` says otherwise.
    """

    def __init__(self, model, *positional, **kwargs):
        if positional and not isinstance(positional[0], SequentialRecConfig) and (
                isinstance(positional[0], nn.Module) or positional[0] is None and (
                    "args" in kwargs or len(positional) > 1 and isinstance(positional[1], SequentialRecConfig))):
            warnings.warn("SequentialRecTrainer(model, item_encoder, args, ...) is deprecated: pass the arguments in "
                          "Trainer's order, SequentialRecTrainer(model, args, train_dataset, eval_dataset, "
                          "item_encoder=...).", FutureWarning, stacklevel=2)
            if "item_encoder" in kwargs:
                raise TypeError("SequentialRecTrainer got `item_encoder` twice (positionally and as a keyword).")
            kwargs["item_encoder"], positional = positional[0], positional[1:]
        self._init_in_trainer_order(model, *positional, **kwargs)

    # help() and inspect show Trainer's order, not the catch-all that keeps the old order working
    __init__.__signature__ = inspect.signature(lambda self, model, args=None, train_dataset=None, eval_dataset=None, *,
                                               item_encoder=None, item_popularity=None, data_collator=None,
                                               **kwargs: None)

    def _init_in_trainer_order(self, model, args: SequentialRecConfig | None = None, train_dataset=None, eval_dataset=None, *,
              item_encoder=None, item_popularity: torch.Tensor | None = None, data_collator=None, **kwargs):
        args = check_args(args, SequentialRecConfig, "sequential_rec")
        if not isinstance(model, SequentialRecommender):
            model = SequentialRecommender(model, item_encoder)
        if args.max_seq_len > model.recommender.config.max_seq_len:
            raise ValueError(f"`max_seq_len`={args.max_seq_len} exceeds the recommender's "
                             f"max_seq_len={model.recommender.config.max_seq_len}.")
        if model.item_encoder is not None and model.item_encoder.num_items is None:
            raise ValueError("The item encoder has no item table: call `set_item_inputs` or load a hidden-state cache.")
        log_pop = None
        if args.logq_correction and item_popularity is None and train_dataset is not None:
            warnings.warn("`logq_correction=True` but no `item_popularity` was given, so the logQ correction is OFF. "
                          "Pass `item_popularity=data.popularity()` (training interaction counts), or set "
                          "`logq_correction=False` to silence this.", UserWarning, stacklevel=3)
        if args.logq_correction and item_popularity is not None:
            if len(item_popularity) != model.num_items:
                raise ValueError(f"`item_popularity` has {len(item_popularity)} entries, the item table {model.num_items}.")
            p = item_popularity.float().clamp_min(1.0)
            log_pop = (p / p.sum()).log()
        callbacks = list(kwargs.pop("callbacks", None) or [])
        default_metric = f"hr@{args.eval_top_k[0]}"  # the config's default when a best model is asked for
        if eval_dataset is not None and (args.metric_for_best_model in (None, default_metric) and (
                args.load_best_model_at_end or args.early_stopping_patience and args.eval_strategy != "no")):
            # validation HR@K: of the first named eval set, or of the only one
            first = f"{next(iter(eval_dataset))}_" if isinstance(eval_dataset, dict) else ""
            args.metric_for_best_model, args.greater_is_better = f"{first}{default_metric}", True
        if args.early_stopping_patience and args.eval_strategy != "no" and eval_dataset is not None:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         data_collator=data_collator or SequentialRecCollator(), callbacks=callbacks, **kwargs)
        self.log_popularity = log_pop
        self.eval_ranks: dict[str, torch.Tensor] = {}  # per-user target ranks of the last evaluation, by prefix

    # ------------------------------------------------------------------------------------ training

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        item_ids = inputs["item_ids"]
        users, candidates, inverse, emb = model(item_ids)
        log_pop = None if self.log_popularity is None else self.log_popularity.to(users.device)
        loss = in_batch_softmax_loss(users, item_ids, candidates, inverse, emb, log_pop, self.args.in_batch_negatives)
        return (loss, users) if return_outputs else loss

    def create_optimizer(self, model=None):
        """Separate learning rates, as in the official code: recommender (``learning_rate``), item encoder
        (``adapter_learning_rate``) and its trainable backbone weights (``backbone_learning_rate``: FFT, LoRA)."""
        core = self.accelerator.unwrap_model(self.model)
        a = self.args
        if self.optimizer is None and core.item_encoder is not None and (
                a.adapter_learning_rate is not None or a.backbone_learning_rate is not None):
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(a, core)
            adapter_lr = a.adapter_learning_rate or a.learning_rate
            encoder = [(n, p) for n, p in core.item_encoder.named_parameters() if p.requires_grad]
            groups = [
                {"params": [p for p in core.recommender.parameters() if p.requires_grad]},
                {"params": [p for n, p in encoder if not n.startswith("backbones.")], "lr": adapter_lr},
                {"params": [p for n, p in encoder if n.startswith("backbones.")],
                 "lr": a.backbone_learning_rate or adapter_lr},
            ]
            self.optimizer = optimizer_cls([g for g in groups if g["params"]],
                                           **{**kwargs, "weight_decay": a.weight_decay})
        return super().create_optimizer(model)

    # ---------------------------------------------------------------------------------- evaluation

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Full-ranking HR@K / NDCG@K: every item scored; with ``args.eval_exclude_history`` (default) every
        history item is removed from the candidates, so a repeated target is a miss (official IISAN rule).

        The per-user ranks are kept in ``self.eval_ranks[prefix]`` (e.g. for
        [`~hfgen.metrics.ranking.bootstrap_ci`]).

        A dict of datasets gives ``{prefix}_{name}_hr@K`` for each, logged as one evaluation.
        """
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        named = dataset.items() if isinstance(dataset, dict) else [(None, dataset)]
        metrics = {}
        for name, ds in named:
            prefix = metric_key_prefix if name is None else f"{metric_key_prefix}_{name}"
            metrics.update(self._full_ranking_metrics(ds, prefix))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _full_ranking_metrics(self, dataset, prefix: str) -> dict[str, float]:
        core = self.accelerator.unwrap_model(self.model)
        was_training = core.training
        core.eval()
        ranks = []
        with torch.no_grad():
            items = core.all_item_embeddings(self.args.item_batch_size)
            for batch in self.get_eval_dataloader(dataset):
                ids = batch["item_ids"]
                mask = ids != 0
                if not mask.any(1).all():
                    raise ValueError("A user has an empty history; full-ranking evaluation needs at least one item.")
                users = core.user_vectors(items[ids], mask.long())[:, -1]
                scores = users @ items.T
                history = batch["history"] if self.args.eval_exclude_history else batch["history"][:, :0]
                scores = mask_history(scores, history)  # never looks at the label: a repeated target is a miss
                ranks.append(self.accelerator.gather_for_metrics(target_ranks(scores, batch["labels"])))
        core.train(was_training)
        ranks = torch.cat(ranks)
        self.eval_ranks[prefix] = ranks.cpu()
        metrics = {}
        for k in self.args.eval_top_k:
            metrics[f"{prefix}_hr@{k}"] = hit_rate_at_k(ranks, k)
            metrics[f"{prefix}_ndcg@{k}"] = ndcg_at_k(ranks, k)
        return metrics

    # -------------------------------------------------------------------------------- card

    @property
    def method_name(self) -> str:
        """The item encoder's method (``iisan``, ``crossan``); ``iisan`` for ID-based or baseline encoders."""
        encoder = self.accelerator.unwrap_model(self.model).item_encoder
        return getattr(encoder, "method_name", None) or "iisan"

    def card_training_config(self) -> dict:
        encoder = self.accelerator.unwrap_model(self.model).item_encoder
        a = self.args
        return {"learning_rate": a.learning_rate, "adapter_learning_rate": a.adapter_learning_rate,
                "batch_size": a.per_device_train_batch_size, "epochs": a.num_train_epochs, "max_seq_len": a.max_seq_len,
                "logq_correction": a.logq_correction, "recipe": a.recipe,
                "in_batch_negatives": a.in_batch_negatives, "early_stopping_patience": a.early_stopping_patience,
                "item_encoder": type(encoder).__name__ if encoder is not None else "ids"}

    def card_vars(self) -> dict:
        encoder = self.accelerator.unwrap_model(self.model).item_encoder
        bases = (encoder.config.backbone_names or {}) if encoder is not None else {}
        return {"backbones": bases, "base_model": next((b for b in bases.values() if "/" in b), None)}
