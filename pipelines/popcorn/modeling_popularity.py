"""An MMRA-style multimodal popularity regressor (``model_type="hfgen_popularity"``).

MMRA (Zhong et al., SIGIR 2024, ``ICDM-UESTC/MMRA``), the predictor LLMPopcorn scores its videos with,
predicts ``log2`` engagement from a video's frames ``V [F, d]`` and title ``T [1, d]``, plus the
frames, titles and labels of the ``K`` most similar videos of a memory (retrieval augmentation):

    V_e = tanh(W_v V),  T_e = tanh(W_t T),  S = V_e T_e^T / d                       # cross-modal affinity
    T_p = att(S) T,  T_n = -alpha att(S) T,  T* = tanh(W_1 [T_p; T_n])            # positive/negative
    V_p = att(S^T) V, V_n = -alpha att(S^T) V, V* = tanh(W_2 [V_p; V_n])
    V_f = tanh(W_3 [V; T*]),  T_f = tanh(W_4 [T; V*])
    v* = softmax(w_v V_f / d)^T V_f,  t* = softmax(w_t T_f / d)^T T_f             # uni-modal pooling
    (V', T', y') = sum_k softmax(sim)_k (V_k, T_k, y_k)   -> same stack, own weights -> v*', t*'
    e_y = ReLU(W_y y')
    y_hat = MLP(10d -> 800 -> 200 -> 1)([t*, v*, t*', v*', v*.v*', v*.t*', t*.v*', t*.t*', v*.e_y, t*.e_y])

Choices that differ from the official code, each for a reason:

- ``att`` normalises over the attended axis. The official ``softmax(S, dim=1)`` / ``softmax(S^T, dim=1)``
  with a single text vector normalises over a length-1 axis, so ``V_p`` becomes an unweighted sum.
- ``e_y`` uses ``ReLU``; the official ``forward`` calls ``self.relu``, which it never defines.
- The features come from encoders inside the model (a ViT CLS per image, a BERT CLS or mean for the
  title, each projected to ``d``), frozen on request as MMRA's precomputed features are
  ([`PopularityModel.with_pretrained_text_encoder`] puts a pretrained sentence encoder in);
  the cover is the first "frame" of ``V`` (MMRA has no cover; LLMPopcorn generates one).
- ``num_retrieved=0`` drops the retrieval branch: ``y_hat = MLP(2d -> ...)([t*, v*])``.

Trainable with ``transformers.Trainer`` (MSE loss on ``labels = log2(1 + comments)``); metrics nMSE,
Spearman and MAE as in MMRA's ``test.py`` ([`popularity_metrics`]).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    BertConfig,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
    ViTModel,
)
from transformers.utils import ModelOutput

from hfgen.hub import SafeSaveMixin


class PopularityConfig(PretrainedConfig):
    """Configuration of [`PopularityModel`].

    Args:
        text_config: ``BertConfig`` (dict) of the title encoder.
        vision_config: ``ViTConfig`` (dict) of the cover / frame encoder; ``image_size`` is the model's input size.
        feature_dim: ``d``, the width of MMRA's features (768 in MMRA).
        num_frames: video frames sampled per video (the cover is added as one more); MMRA uses 10.
        num_retrieved: ``K`` memory neighbours per video (0: no retrieval branch).
        alpha: weight of the negative attention (MMRA's default 0.6).
        mlp_dims: hidden widths of the prediction MLP (MMRA: 800, 200).
        freeze_text_encoder / freeze_vision_encoder: keep an encoder fixed (MMRA trains on precomputed features
            of frozen pretrained encoders: AnglE-BERT for titles, ViT for frames).
        text_pooling: ``"cls"`` or ``"mean"`` (masked mean of the title's token states, sentence-transformers' pooling).
        label_mean / label_std: the prediction is ``label_mean + label_std * MLP(...)``; set them to the
            training labels' mean and standard deviation so the MLP starts at the right scale.
    """

    model_type = "hfgen_popularity"
    sub_configs = {"text_config": BertConfig, "vision_config": ViTConfig}

    def __init__(self, text_config=None, vision_config=None, feature_dim: int = 64, num_frames: int = 4,
                 num_retrieved: int = 0, alpha: float = 0.6, mlp_dims=(800, 200), freeze_text_encoder: bool = False, freeze_vision_encoder: bool = False,
                 text_pooling: str = "cls", label_mean: float = 0.0, label_std: float = 1.0, **kwargs):
        if feature_dim < 1:
            raise ValueError(f"`feature_dim` must be >= 1, got {feature_dim}.")
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be >= 1, got {num_frames}.")
        if num_retrieved < 0:
            raise ValueError(f"`num_retrieved` must be >= 0, got {num_retrieved}.")
        if not mlp_dims or any(int(h) < 1 for h in mlp_dims):
            raise ValueError(f"`mlp_dims` must be positive widths, got {mlp_dims}.")
        if text_pooling not in ("cls", "mean"):
            raise ValueError(f"`text_pooling` must be 'cls' or 'mean', got {text_pooling!r}.")
        if label_std <= 0:
            raise ValueError(f"`label_std` must be > 0, got {label_std}.")
        if isinstance(text_config, PretrainedConfig):
            text_config = text_config.to_dict()
        if isinstance(vision_config, PretrainedConfig):
            vision_config = vision_config.to_dict()
        self.text_config = BertConfig(**(text_config or {}))
        self.vision_config = ViTConfig(**(vision_config or {}))
        self.feature_dim, self.num_frames, self.num_retrieved = feature_dim, num_frames, num_retrieved
        self.alpha, self.mlp_dims, self.text_pooling = alpha, list(mlp_dims), text_pooling
        self.freeze_text_encoder, self.freeze_vision_encoder = freeze_text_encoder, freeze_vision_encoder
        self.label_mean, self.label_std = float(label_mean), float(label_std)
        super().__init__(**kwargs)

    @property
    def image_size(self) -> int:
        return self.vision_config.image_size


@dataclass
class PopularityOutput(ModelOutput):
    """
    Args:
        loss: MSE to ``labels`` (when given).
        logits: predicted ``log2(1 + comments)``, shape ``[B]``.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class MMRAStack(nn.Module):
    """MMRA's cross-modal (positive / negative) attention and uni-modal attention pooling."""

    def __init__(self, d: int, alpha: float):
        super().__init__()
        self.d, self.alpha = d, alpha
        self.visual_embedding, self.textual_embedding = nn.Linear(d, d), nn.Linear(d, d)
        self.dual_t, self.dual_v = nn.Linear(2 * d, d), nn.Linear(2 * d, d)
        self.cross_v, self.cross_t = nn.Linear(2 * d, d), nn.Linear(2 * d, d)
        self.pool_v, self.pool_t = nn.Linear(d, 1), nn.Linear(d, 1)

    def forward(self, V: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # V [B,F,d], T [B,1,d]
        V_e, T_e = torch.tanh(self.visual_embedding(V)), torch.tanh(self.textual_embedding(T))
        S = V_e @ T_e.transpose(1, 2) / self.d  # [B, F, 1]
        T_p = torch.softmax(S, dim=2) @ T  # each frame attends over the title: [B, F, d]
        V_p = torch.softmax(S.transpose(1, 2), dim=2) @ V  # the title attends over the frames: [B, 1, d]
        T_star = torch.tanh(self.dual_t(torch.cat([T_p, -self.alpha * T_p], dim=2)))
        V_star = torch.tanh(self.dual_v(torch.cat([V_p, -self.alpha * V_p], dim=2)))
        V_f = torch.tanh(self.cross_v(torch.cat([V, T_star], dim=2)))
        T_f = torch.tanh(self.cross_t(torch.cat([T, V_star.expand_as(T)], dim=2)))
        v = torch.softmax(self.pool_v(V_f) / self.d, dim=1).transpose(1, 2) @ V_f  # [B, 1, d]
        t = torch.softmax(self.pool_t(T_f) / self.d, dim=1).transpose(1, 2) @ T_f
        return v.squeeze(1), t.squeeze(1)


class PopularityModel(SafeSaveMixin, PreTrainedModel):
    """MMRA-style popularity regressor over a title, a cover and video frames (see the module docstring)."""

    config_class = PopularityConfig
    base_model_prefix = "popularity"
    main_input_name = "pixel_values"

    def __init__(self, config: PopularityConfig):
        super().__init__(config)
        d = config.feature_dim
        self.text_encoder = BertModel(config.text_config, add_pooling_layer=False)
        self.vision_encoder = ViTModel(config.vision_config, add_pooling_layer=False)
        self.text_proj = nn.Linear(config.text_config.hidden_size, d)
        self.vision_proj = nn.Linear(config.vision_config.hidden_size, d)
        self.target_stack = MMRAStack(d, config.alpha)
        n_in = 2 * d
        if config.num_retrieved:
            self.retrieval_stack = MMRAStack(d, config.alpha)
            self.label_embedding = nn.Linear(1, d)
            n_in = 10 * d
        dims = [n_in, *config.mlp_dims]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.prediction_module = nn.Sequential(*layers, nn.Linear(dims[-1], 1))
        self.text_encoder.requires_grad_(not config.freeze_text_encoder)
        self.vision_encoder.requires_grad_(not config.freeze_vision_encoder)
        self.post_init()

    def train(self, mode: bool = True):
        """A frozen encoder stays in eval mode (no dropout): its features are fixed, as MMRA's precomputed ones."""
        super().train(mode)
        for frozen, encoder in ((self.config.freeze_text_encoder, self.text_encoder),
                                (self.config.freeze_vision_encoder, self.vision_encoder)):
            if frozen:
                encoder.eval()
        return self

    @classmethod
    def with_pretrained_text_encoder(cls, path: str, freeze: bool = True, **config_kwargs) -> PopularityModel:
        """A model whose title encoder is the BERT-family encoder at ``path`` (e.g. the packaged
        ``all-MiniLM-L6-v2``), mean-pooled and frozen by default, as MMRA uses frozen text features."""
        encoder = BertModel.from_pretrained(path, add_pooling_layer=False)
        config = PopularityConfig(text_config=encoder.config.to_dict(), text_pooling="mean", freeze_text_encoder=freeze,
                                  **config_kwargs)
        model = cls(config)
        model.text_encoder.load_state_dict(encoder.state_dict())
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained`` (safetensors) plus the hfgen model card."""
        from hfgen.hub import save_model_card

        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            save_model_card(save_directory, "popcorn", model_name=f"{os.path.basename(os.path.abspath(save_directory))}",
                            extra_tags=["popularity-prediction", "mmra"],
                            training_config={k: getattr(self.config, k) for k in (
                                "feature_dim", "num_frames", "num_retrieved", "alpha", "text_pooling", "label_mean", "label_std")})

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[..., L]`` token ids -> ``[..., 1, d]`` title features (BERT CLS or masked mean, projected)."""
        lead = input_ids.shape[:-1]
        ids = input_ids.reshape(-1, input_ids.shape[-1])
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.reshape(ids.shape)
        states = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.config.text_pooling == "mean":
            pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        else:
            pooled = states[:, 0]
        return self.text_proj(pooled).reshape(*lead, 1, -1)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[..., F, 3, H, W]`` in [-1, 1] -> ``[..., F, d]`` frame features (ViT CLS, projected)."""
        lead = pixel_values.shape[:-3]
        cls = self.vision_encoder(pixel_values=pixel_values.reshape(-1, *pixel_values.shape[-3:])).last_hidden_state[:, 0]
        return self.vision_proj(cls).reshape(*lead, -1)

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                retrieved_input_ids: torch.Tensor | None = None, retrieved_attention_mask: torch.Tensor | None = None,
                retrieved_pixel_values: torch.Tensor | None = None, retrieved_popularity: torch.Tensor | None = None,
                retrieved_similarity: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> PopularityOutput | tuple:
        r"""
        Args:
            input_ids / attention_mask: the title, ``[B, L]``.
            pixel_values: the cover followed by the frames, ``[B, 1 + num_frames, 3, H, W]`` in [-1, 1].
            retrieved_*: the ``K`` neighbours' titles ``[B, K, L]``, media ``[B, K, 1 + num_frames, 3, H, W]``,
                labels ``[B, K]`` and similarities ``[B, K]`` (required when ``num_retrieved > 0``).
            labels: ``log2(1 + comments)``, ``[B]``.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        v, t = self.target_stack(self.encode_images(pixel_values), self.encode_text(input_ids, attention_mask))
        feats = [t, v]
        if self.config.num_retrieved:
            if retrieved_input_ids is None or retrieved_pixel_values is None or retrieved_popularity is None or retrieved_similarity is None:
                raise ValueError("`retrieved_input_ids`, `retrieved_pixel_values`, `retrieved_popularity` and "
                                 "`retrieved_similarity` are required when `config.num_retrieved > 0`.")
            w = torch.softmax(retrieved_similarity.float(), dim=1)  # [B, K]
            V_r = torch.einsum("bk,bkfd->bfd", w, self.encode_images(retrieved_pixel_values))
            T_r = torch.einsum("bk,bkld->bld", w, self.encode_text(retrieved_input_ids, retrieved_attention_mask))
            y_r = (w * retrieved_popularity.float()).sum(1, keepdim=True)  # [B, 1]
            v_r, t_r = self.retrieval_stack(V_r, T_r)
            e_y = torch.relu(self.label_embedding(y_r))
            feats += [t_r, v_r, v * v_r, v * t_r, t * v_r, t * t_r, v * e_y, t * e_y]
        logits = self.config.label_mean + self.config.label_std * self.prediction_module(torch.cat(feats, dim=-1)).squeeze(-1)
        loss = None if labels is None else nn.functional.mse_loss(logits, labels.to(logits.dtype))
        if not return_dict:
            return (logits,) if loss is None else (loss, logits)
        return PopularityOutput(loss=loss, logits=logits)


def popularity_metrics(predictions, labels) -> dict[str, float]:
    """MMRA's metrics: nMSE = mean((y_hat - y)^2) / var(y), Spearman's rank correlation (SRC) and MAE."""
    from scipy.stats import spearmanr

    p, y = np.asarray(predictions, dtype=np.float64).reshape(-1), np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape or p.size < 2:
        raise ValueError(f"`predictions` and `labels` must have the same length >= 2, got {p.shape} and {y.shape}.")
    return {"nmse": float(np.mean((p - y) ** 2) / np.var(y)), "spearman": float(spearmanr(p, y).statistic),
            "mae": float(np.mean(np.abs(p - y)))}


def compute_metrics(eval_pred) -> dict[str, float]:
    """``Trainer(compute_metrics=...)`` adapter of [`popularity_metrics`]."""
    predictions, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    return popularity_metrics(predictions, labels)


def images_to_tensor(images, size: int) -> torch.Tensor:
    """PIL images, or float arrays ``[H, W, 3]`` in [0, 1], -> ``[N, 3, size, size]`` in [-1, 1]."""
    from PIL import Image

    out = []
    for im in images:
        if not isinstance(im, Image.Image):
            im = Image.fromarray((np.clip(np.asarray(im, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8))
        arr = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.stack(out) * 2 - 1


def sample_frames(frames, num_frames: int) -> list:
    """``num_frames`` frames picked uniformly (``np.linspace``, as MMRA samples its 10 frames)."""
    idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    return [frames[i] for i in idx]


class PopularityCollator:
    """Batches MicroLens-style rows (``title_en``, ``caption_en``, ``cover``, ``frames``, ``log_popularity``)
    for [`PopularityModel`], retrieving MMRA's ``K`` neighbours from ``memory`` (a
    [`~.retrieval.PopularityRetriever`]) by title + caption similarity. Rows with a ``memory_index``
    (their own row in the memory) never retrieve themselves."""

    def __init__(self, tokenizer, config: PopularityConfig, memory=None, max_length: int = 16):
        if config.num_retrieved and memory is None:
            raise ValueError("`memory` (a PopularityRetriever over the training table) is required when "
                             "`config.num_retrieved > 0`.")
        self.tokenizer, self.config, self.memory, self.max_length = tokenizer, config, memory, max_length

    def _tokens(self, titles: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(titles, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")

    def _media(self, cover, frames) -> torch.Tensor:
        return images_to_tensor([cover, *sample_frames(list(frames), self.config.num_frames)], self.config.image_size)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        tok = self._tokens([r["title_en"] for r in rows])
        batch = {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                 "pixel_values": torch.stack([self._media(r["cover"], r["frames"]) for r in rows])}
        if "log_popularity" in rows[0]:
            batch["labels"] = torch.tensor([r["log_popularity"] for r in rows], dtype=torch.float32)
        K = self.config.num_retrieved
        if K:
            texts = [f"{r['title_en']} {r['caption_en']}" for r in rows]
            exclude = [r["memory_index"] for r in rows] if "memory_index" in rows[0] else None
            idx, sims = self.memory.neighbors(texts, K, exclude=exclude)
            table = self.memory.table
            neighbours = [table[int(i)] for i in idx.reshape(-1)]
            ntok = self._tokens([n["title_en"] for n in neighbours])
            B = len(rows)
            batch["retrieved_input_ids"] = ntok["input_ids"].reshape(B, K, -1)
            batch["retrieved_attention_mask"] = ntok["attention_mask"].reshape(B, K, -1)
            batch["retrieved_pixel_values"] = torch.stack([self._media(n["cover"], n["frames"]) for n in neighbours]).reshape(
                B, K, self.config.num_frames + 1, 3, self.config.image_size, self.config.image_size)
            batch["retrieved_popularity"] = torch.tensor([float(n["log_popularity"]) for n in neighbours]).reshape(B, K)
            batch["retrieved_similarity"] = torch.from_numpy(sims.astype(np.float32))
        return batch


AutoConfig.register(PopularityConfig.model_type, PopularityConfig, exist_ok=True)
AutoModel.register(PopularityConfig, PopularityModel, exist_ok=True)
