"""MF^2: a Multilevel Multimodal Face Foundation model (Zheng et al., ICME 2025, arXiv 2504.10351).

MF^2 aligns face images with language at two levels. The *global* level pairs a whole-face feature
with an emotion description; the *local* level pairs one feature per Action Unit (AU) with that AU's
description. No code is public; this is the reconstruction of ``face_popcorn.md`` §1.4, with each
piece checked by a test:

    H      = ViT(x)                                   # [B, 1 + N, D], after the final LayerNorm
    g      = P_v H[:, 0]                              # global face embedding  [B, E]
    L      = LN(Q + CrossAttn(Q, H[:, 1:]))           # K learned AU queries read the patches  [B, K, D]
    z_k    = P_l L[:, k]                              # local AU embeddings  [B, K, E]
    t      = P_t mean(BERT(d_emo)),  t_k = P_t mean(BERT(d_au_k))   # masked token means

    L_glob = C(s_g ĝ t̂ᵀ)         [B x B]
    L_loc  = C(s_l Ẑ T̂ᵀ)          [BK x BK], over all (face, AU) pairs       L = λ_g L_glob + λ_l L_loc

where ``^`` is L2 normalisation, ``s = exp(logit_scale)`` (clamped at 100, as CLIP) and ``C`` is the
symmetric InfoNCE of CLIP with *multiple positives*: samples whose descriptions are identical are
positives of each other (UniCL's target, Yang et al. 2022), which is exactly CLIP's loss when all
descriptions differ. Templated AU descriptions repeat by construction (one text per AU state), so
without this every batch would be full of false negatives.

Two choices differ from the paper's description as first implemented here, because that version collapsed in our
runs on synthetic faces (all similarities equal, loss stuck at ``log B``): the local loss contrasts a
feature with every AU's descriptions, not only its own AU's (``per_au=True`` keeps the per-AU mean
``(1/K) Σ_k C(s_l ẑ_k t̂_kᵀ)``), and descriptions are pooled by their token mean, not ``[CLS]``.

Zero-shot scoring compares image features with prompt embeddings: an emotion's logit is
``s_g ĝ·t̂_c``; an AU's logit is the log-odds of the two-way choice between its "present" and
"absent" descriptions, ``s_l ẑ_k·(t̂_k^present - t̂_k^absent)``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput

from hfgen.data.faces import EMOTIONS, SYNTHETIC_AUS, check_au_names
from hfgen.hub import SafeSaveMixin
from hfgen.validation import check_numeric_fields

MAX_LOGIT_SCALE = 100.0  # CLIP clips exp(logit_scale) at 100


class MF2Config(PreTrainedConfig):
    r"""Configuration of [`MF2Model`].

    Args:
        vision_config (`dict` or `PreTrainedConfig`): the image encoder, any config whose ``AutoModel`` returns
            ``[CLS] + patch`` tokens (ViT, DeiT, CLIP's vision tower, ...). A dict without ``model_type`` is a
            ``ViTConfig``. Its ``[CLS]`` token after the tower's final norm is the global feature.
        text_config (`dict` or `PreTrainedConfig`): the description encoder, any config whose ``AutoModel`` returns
            ``last_hidden_state`` (BERT, CLIP's text tower, ...); its masked token mean is used. A dict without
            ``model_type`` is a ``BertConfig``.
        vision_final_norm (`str`, *optional*): path, inside the vision tower, of the norm applied to the last
            layer's tokens (ViT: ``"layernorm"``; CLIP: ``"post_layernorm"``). Found automatically
            when left unset.
        au_names (`list[str]`): the AUs with a learned query (local level), e.g. ``["AU1", "AU2", ...]``.
        emotion_names (`list[str]`): emotion classes, used by the zero-shot helpers and the model card.
        projection_dim (`int`): width ``E`` of the shared image-text embedding space.
        au_attention_heads (`int`): heads of the AU queries' cross-attention over the patch tokens.
        logit_scale_init_value (`float`): initial ``log s`` of both levels (CLIP's ``log(1/0.07)``).
        initializer_range (`float`): std of the normal initialisation of the new weights.
    """

    model_type = "hfgen_mf2"
    sub_configs_defaults = {"vision_config": SubConfigSpec(config_class=AutoConfig, model_type="vit"),
                            "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    vision_final_norm: str | None = None
    au_names: list[str] | None = None
    emotion_names: list[str] | None = None
    projection_dim: int = 64
    au_attention_heads: int = 4
    logit_scale_init_value: float = 2.6592
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        check_numeric_fields(self, PreTrainedConfig)  # types and finiteness of MF2's own fields, naming them
        super().__post_init__(**kwargs)
        self.au_names = check_au_names(self.au_names if self.au_names is not None else list(SYNTHETIC_AUS))
        self.emotion_names = list(self.emotion_names if self.emotion_names is not None else EMOTIONS)
        if len(self.emotion_names) < 2 or len(set(self.emotion_names)) != len(self.emotion_names):
            raise ValueError(f"`emotion_names` must list at least two distinct classes, got {self.emotion_names!r}.")
        if int(self.projection_dim) < 1:
            raise ValueError(f"`projection_dim` must be a positive integer, got {self.projection_dim!r}.")
        for name in ("vision_config", "text_config"):
            if type(getattr(self, name)) not in MODEL_MAPPING:
                raise ValueError(f"`{name}` must be the config of a model `AutoModel` can build, got "
                                 f"{type(getattr(self, name)).__name__}.")
        for field in ("hidden_size", "image_size", "patch_size", "num_channels", "num_hidden_layers"):
            if not hasattr(self.vision_config, field):
                raise ValueError(f"`vision_config` ({type(self.vision_config).__name__}) has no `{field}`: MF^2 needs "
                                 "a ViT-style image encoder ([CLS] + patch tokens).")
        d = self.vision_config.hidden_size
        if self.au_attention_heads < 1 or d % self.au_attention_heads:
            raise ValueError(f"`au_attention_heads` ({self.au_attention_heads}) must divide the vision hidden size {d}.")
        if not isinstance(self.vision_config.image_size, int) or self.vision_config.image_size % self.vision_config.patch_size:
            raise ValueError(f"`vision_config.image_size` must be an int multiple of `patch_size` "
                             f"({self.vision_config.patch_size}), got {self.vision_config.image_size!r}.")


@dataclass
class MF2Output(ModelOutput):
    """Output of [`MF2Model`].

    Args:
        loss: ``λ_g L_glob + λ_l L_loc`` (with ``return_loss``).
        loss_global, loss_local: the two alignment losses.
        logits_per_image: ``[B, B]`` global similarities ``s_g ĝ t̂ᵀ``; ``logits_per_text`` is its transpose.
        image_embeds: ``[B, E]`` normalised global image embeddings; ``text_embeds`` the emotion descriptions'.
        au_embeds: ``[B, K, E]`` normalised local AU embeddings; ``au_text_embeds`` the AU descriptions'.
        vision_hidden_states: the ViT's hidden states (with ``output_hidden_states``).
    """

    loss: torch.Tensor | None = None
    loss_global: torch.Tensor | None = None
    loss_local: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    au_embeds: torch.Tensor | None = None
    au_text_embeds: torch.Tensor | None = None
    vision_hidden_states: tuple[torch.Tensor, ...] | None = None


# ------------------------------------------------------------------------------------- losses


def multi_positive_contrastive_loss(logits: torch.Tensor, positive_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over a ``[B, B]`` image-text similarity with positives given by ``positive_mask``.

    ``½ [CE(S, P) + CE(Sᵀ, Pᵀ)]`` with each row of the target ``P`` the row of the mask normalised to
    sum to one (UniCL). With ``positive_mask = I`` (the default) this is CLIP's loss (``image_text_contrastive_loss`` in transformers).
    """
    if positive_mask is None:
        positive_mask = torch.eye(len(logits), device=logits.device)
    mask = positive_mask.to(logits.dtype)
    image_to_text = -(mask / mask.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    text_to_image = -(mask.T / mask.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def same_text_mask(text_ids: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` mask of pairs with the same description id (ids from [`MF2Model.encode_texts`])."""
    return text_ids[:, None] == text_ids[None, :]


def global_contrastive_loss(image_embeds, text_embeds, logit_scale, text_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_glob, logits_per_image)`` for normalised ``[B, E]`` embeddings; positives share a ``text_id``."""
    logits = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * image_embeds @ text_embeds.T
    mask = same_text_mask(text_ids) if text_ids is not None else None
    return multi_positive_contrastive_loss(logits, mask), logits


def local_contrastive_loss(au_embeds, au_text_embeds, logit_scale, au_text_ids=None, per_au: bool = False) -> torch.Tensor:
    """``L_loc`` for normalised ``[B, K, E]`` AU embeddings and their descriptions' embeddings.

    Default: one contrastive loss over all ``B*K`` (face, AU) pairs, so a local feature is told apart
    from the other AUs' descriptions as well as from the other state of its own AU. ``per_au=True``:
    the mean over AUs of a per-AU loss over the batch.
    """
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    if not per_au:
        E = au_embeds.shape[-1]
        logits = scale * au_embeds.reshape(-1, E) @ au_text_embeds.reshape(-1, E).T
        mask = same_text_mask(au_text_ids.reshape(-1)) if au_text_ids is not None else None
        return multi_positive_contrastive_loss(logits, mask)
    losses = []
    for k in range(au_embeds.shape[1]):
        logits = scale * au_embeds[:, k] @ au_text_embeds[:, k].T
        mask = same_text_mask(au_text_ids[:, k]) if au_text_ids is not None else None
        losses.append(multi_positive_contrastive_loss(logits, mask))
    return torch.stack(losses).mean()


# -------------------------------------------------------------------------------------- model

FINAL_NORM_NAMES = ("layernorm", "post_layernorm", "vision_model.post_layernorm", "norm")


def build_tower(config: PreTrainedConfig) -> PreTrainedModel:
    """The ``AutoModel`` of ``config``, without a pooling layer where the class has one (MF^2 pools itself)."""
    cls = MODEL_MAPPING[type(config)]
    kwargs = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls.__init__).parameters else {}
    return cls(config, **kwargs)


def find_final_norm(vision_model: nn.Module, path: str | None = None) -> str:
    """Path of the norm a vision tower applies to its last layer's tokens (``path`` checked, or found by name)."""
    modules = dict(vision_model.named_modules())
    if path is not None:
        if path not in modules:
            raise ValueError(f"`vision_final_norm` {path!r} is not a module of {type(vision_model).__name__}.")
        return path
    for name in FINAL_NORM_NAMES:
        if name in modules:
            return name
    raise ValueError(f"Cannot find the final norm of {type(vision_model).__name__} (looked for {FINAL_NORM_NAMES}); "
                     "set `vision_final_norm` in the MF2Config.")



class MF2Model(SafeSaveMixin, PreTrainedModel):
    """MF^2 (see the module docstring): a vision + text dual encoder with global and per-AU alignment.

    The towers are any ``AutoModel`` of ``config.vision_config`` / ``config.text_config``: e.g. ViT + BERT (the
    default for dicts without ``model_type``) or CLIP's vision and text towers (``CLIPVisionConfig``,
    ``CLIPTextConfig``).

    Example::

        from transformers import BertConfig, ViTConfig
        from hfgen.data.faces import build_face_tokenizer, emotion_prompts
        from hfgen.models.mf2 import MF2Config, MF2Model

        tok = build_face_tokenizer()
        config = MF2Config(vision_config=ViTConfig(image_size=48, patch_size=8, hidden_size=64, num_hidden_layers=4,
                                                   num_attention_heads=4, intermediate_size=128),
                           text_config=BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                                                  num_attention_heads=4, intermediate_size=128))
        model = MF2Model(config)
        prompts = tok(emotion_prompts(config.emotion_names), padding=True, return_tensors="pt")
        logits = model.zero_shot_emotion_logits(pixel_values, prompts.input_ids, prompts.attention_mask)
    """

    config_class = MF2Config
    base_model_prefix = "mf2"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")

    def __init__(self, config: MF2Config):
        super().__init__(config)
        vc, tc = config.vision_config, config.text_config
        D, E, K = vc.hidden_size, config.projection_dim, len(config.au_names)
        self.vision_model = build_tower(vc)
        self.text_model = build_tower(tc)
        self._final_norm_path = find_final_norm(self.vision_model, config.vision_final_norm)
        self.au_queries = nn.Parameter(torch.zeros(K, D))
        self.au_attention = nn.MultiheadAttention(D, config.au_attention_heads, batch_first=True)
        self.au_norm = nn.LayerNorm(D, eps=getattr(vc, "layer_norm_eps", 1e-5))
        self.visual_projection = nn.Linear(D, E, bias=False)
        self.local_projection = nn.Linear(D, E, bias=False)
        self.text_projection = nn.Linear(tc.hidden_size, E, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.local_logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MF2Model):
            init.normal_(module.au_queries, std=self.config.initializer_range)
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            init.constant_(module.local_logit_scale, self.config.logit_scale_init_value)

    # ---------------------------------------------------------------------------- input checks

    def check_pixel_values(self, pixel_values) -> None:
        vc = self.config.vision_config
        want = (vc.num_channels, vc.image_size, vc.image_size)
        if not torch.is_tensor(pixel_values) or pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != want:
            got = tuple(pixel_values.shape) if torch.is_tensor(pixel_values) else type(pixel_values).__name__
            raise ValueError(f"`pixel_values` must be a [batch, {want[0]}, {want[1]}, {want[2]}] tensor "
                             f"(channels, height, width of the model), got {got}.")

    def _check_text(self, input_ids, name: str, dims: int) -> None:
        if not torch.is_tensor(input_ids) or input_ids.dim() != dims:
            got = tuple(input_ids.shape) if torch.is_tensor(input_ids) else type(input_ids).__name__
            raise ValueError(f"`{name}` must be a {dims}-d tensor of token ids, got {got}.")
        if dims == 3 and input_ids.shape[1] != len(self.config.au_names):
            raise ValueError(f"`{name}` must hold one description per AU ({len(self.config.au_names)}: "
                             f"{self.config.au_names}), got {input_ids.shape[1]}.")

    # ------------------------------------------------------------------------------- features

    def _au_readout(self, tokens: torch.Tensor) -> torch.Tensor:
        """``L = LN(Q + CrossAttn(Q, patches))``: ``[B, 1 + N, D]`` normalised tokens -> ``[B, K, D]``."""
        q = self.au_queries.expand(tokens.shape[0], -1, -1)
        attended, _ = self.au_attention(q, tokens[:, 1:], tokens[:, 1:], need_weights=False)
        return self.au_norm(q + attended)

    def encode_image(self, pixel_values, output_hidden_states: bool = False):
        """``(global [B, E], local [B, K, E], hidden_states)``: unnormalised projected image features."""
        h, hidden_states = self.image_tokens(pixel_values)
        return (self.visual_projection(h[:, 0]), self.local_projection(self._au_readout(h)),
                hidden_states if output_hidden_states else None)

    def image_tokens(self, pixel_values) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(tokens [B, 1 + N, D], hidden_states)``: the last layer's tokens after the tower's final norm.

        The same for every tower: ViT normalises its ``last_hidden_state``, CLIP's vision tower does not (it
        normalises only the pooled ``[CLS]``), so the norm is applied here to the last ``hidden_states``.
        """
        self.check_pixel_values(pixel_values)
        hidden = self.vision_model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        return self.vision_final_norm(hidden[-1]), hidden

    def vision_final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The vision tower's final norm (``config.vision_final_norm``), applied to any layer's tokens."""
        return self.vision_model.get_submodule(self._final_norm_path)(tokens)

    def get_image_features(self, pixel_values) -> torch.Tensor:
        """Global image embeddings ``[B, E]`` (unnormalised, as CLIP's)."""
        return self.encode_image(pixel_values)[0]

    def get_au_features(self, pixel_values) -> torch.Tensor:
        """Local AU embeddings ``[B, K, E]`` (unnormalised)."""
        return self.encode_image(pixel_values)[1]

    def get_text_features(self, input_ids, attention_mask=None) -> torch.Tensor:
        """Description embeddings ``[N, E]``: the masked mean of the text encoder's tokens, projected (unnormalised)."""
        self._check_text(input_ids, "input_ids", 2)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        w = attention_mask[..., None].to(h.dtype)
        return self.text_projection((h * w).sum(1) / w.sum(1))

    def encode_texts(self, input_ids, attention_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(normalised embeddings [N, E], text ids [N])``: each distinct description is encoded once.

        Equal text ids mark identical descriptions (the positives of the multi-positive loss).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        T = input_ids.shape[1]
        unique, text_ids = torch.unique(torch.cat([input_ids, attention_mask.to(input_ids.dtype)], 1), dim=0,
                                        return_inverse=True)
        embeds = F.normalize(self.get_text_features(unique[:, :T], unique[:, T:]), dim=-1)
        return embeds[text_ids], text_ids

    @torch.no_grad()
    def multilevel_states(self, pixel_values, layers: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen per-layer states a decoupled side network reads: ``([B, L, D], [B, L, K, D])``.

        For each ``hidden_states`` index in ``layers``: the ``[CLS]`` token and the K AU read-outs of
        that layer's tokens, both after the ViT's final LayerNorm (so the last layer gives exactly the
        features MF^2 aligns).
        """
        self.check_pixel_values(pixel_values)
        hidden = self.vision_model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        normed = [self.vision_final_norm(hidden[i]) for i in layers]
        return (torch.stack([h[:, 0] for h in normed], 1),
                torch.stack([self._au_readout(h) for h in normed], 1))

    # ------------------------------------------------------------------------------- zero-shot

    def zero_shot_emotion_logits(self, pixel_values, input_ids, attention_mask=None) -> torch.Tensor:
        """``[B, C]`` emotion logits ``s_g ĝ·t̂_c`` against one prompt per class (``input_ids`` ``[C, T]``)."""
        image = F.normalize(self.get_image_features(pixel_values), dim=-1)
        text = F.normalize(self.get_text_features(input_ids, attention_mask), dim=-1)
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * image @ text.T

    def zero_shot_au_logits(self, pixel_values, present_input_ids, absent_input_ids, present_attention_mask=None,
                            absent_attention_mask=None) -> torch.Tensor:
        """``[B, K]`` AU log-odds ``s_l ẑ_k·(t̂_k^present - t̂_k^absent)`` (``sigmoid`` gives P(present)).

        ``present_input_ids`` / ``absent_input_ids``: ``[K, T]``, one prompt per AU of ``config.au_names``.
        """
        K = len(self.config.au_names)
        for name, ids in (("present_input_ids", present_input_ids), ("absent_input_ids", absent_input_ids)):
            self._check_text(ids, name, 2)
            if ids.shape[0] != K:
                raise ValueError(f"`{name}` must hold one prompt per AU of {self.config.au_names}, got {ids.shape[0]}.")
        z = F.normalize(self.get_au_features(pixel_values), dim=-1)  # [B, K, E]
        t_on = F.normalize(self.get_text_features(present_input_ids, present_attention_mask), dim=-1)
        t_off = F.normalize(self.get_text_features(absent_input_ids, absent_attention_mask), dim=-1)
        return self.local_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * (z * (t_on - t_off)).sum(-1)

    # --------------------------------------------------------------------------------- forward

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        au_input_ids: torch.Tensor | None = None,
        au_attention_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        global_loss_weight: float = 1.0,
        local_loss_weight: float = 1.0,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> MF2Output | tuple:
        r"""
        Args:
            pixel_values: ``[B, C, H, W]`` face images.
            input_ids, attention_mask: ``[B, T]`` global (emotion-level) descriptions.
            au_input_ids, au_attention_mask: ``[B, K, T]`` local descriptions, one per AU of ``config.au_names``.
            return_loss: compute ``λ_g L_glob + λ_l L_loc`` (each term needs its descriptions).
            global_loss_weight, local_loss_weight: ``λ_g``, ``λ_l``; a zero weight skips that level
                (``local_loss_weight=0`` is the global-only ablation).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if return_loss and global_loss_weight > 0 and input_ids is None:
            raise ValueError("`return_loss` with `global_loss_weight` > 0 needs `input_ids` (the global descriptions).")
        if return_loss and local_loss_weight > 0 and au_input_ids is None:
            raise ValueError("`return_loss` with `local_loss_weight` > 0 needs `au_input_ids` (one description per AU).")
        g, z, hidden_states = self.encode_image(pixel_values, output_hidden_states=bool(output_hidden_states))
        image_embeds, au_embeds = F.normalize(g, dim=-1), F.normalize(z, dim=-1)
        B, K = au_embeds.shape[:2]
        out = MF2Output(image_embeds=image_embeds, au_embeds=au_embeds, vision_hidden_states=hidden_states)
        losses = []
        if input_ids is not None and (not return_loss or global_loss_weight > 0):
            self._check_text(input_ids, "input_ids", 2)
            if input_ids.shape[0] != B:
                raise ValueError(f"`input_ids` has {input_ids.shape[0]} descriptions for {B} images.")
            out.text_embeds, text_ids = self.encode_texts(input_ids, attention_mask)
            out.loss_global, out.logits_per_image = global_contrastive_loss(image_embeds, out.text_embeds,
                                                                            self.logit_scale, text_ids)
            out.logits_per_text = out.logits_per_image.T
            losses.append(global_loss_weight * out.loss_global)
        if au_input_ids is not None and (not return_loss or local_loss_weight > 0):
            self._check_text(au_input_ids, "au_input_ids", 3)
            if au_input_ids.shape[0] != B:
                raise ValueError(f"`au_input_ids` has {au_input_ids.shape[0]} rows for {B} images.")
            T = au_input_ids.shape[-1]
            mask = au_attention_mask.reshape(B * K, T) if au_attention_mask is not None else None
            embeds, ids = self.encode_texts(au_input_ids.reshape(B * K, T), mask)
            out.au_text_embeds = embeds.view(B, K, -1)
            out.loss_local = local_contrastive_loss(au_embeds, out.au_text_embeds, self.local_logit_scale,
                                                    ids.view(B, K))
            losses.append(local_loss_weight * out.loss_local)
        if return_loss:
            out.loss = torch.stack(losses).sum()
        return out if return_dict else out.to_tuple()


AutoConfig.register(MF2Config.model_type, MF2Config, exist_ok=True)
AutoModel.register(MF2Config, MF2Model, exist_ok=True)

__all__ = ["MF2Config", "MF2Model", "MF2Output", "global_contrastive_loss", "local_contrastive_loss",
           "multi_positive_contrastive_loss"]
