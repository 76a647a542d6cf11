"""Sequential-recommendation data: the IISAN TSV layout, MicroLens-style folders, and a synthetic set.

Internal item ids are ``1..n``; id 0 is the padding item (its title is empty). Sequences are in time
order. [`RecommendationData.leave_one_out`] gives the papers' protocol: per user, the last item
is the test target, the one before it the validation target, and the rest is training data.

Real data (the loader takes a path, nothing is downloaded):

- IISAN layout: ``items.tsv`` (or ``*items*.tsv``): ``ITEM_ID<TAB>TITLE``; ``users.tsv`` (or
  ``*users*.tsv``): ``USER_ID<TAB>ITEM ITEM ...`` in time order;
- MicroLens-style: ``*pairs*.tsv`` for the sequences and ``*title*.{tsv,csv}`` for the titles,
  with an optional ``covers/`` folder of ``<ITEM_ID>.jpg`` images.

Items that a sequence names but the item table lacks are a documented, counted skip: they are
dropped from the sequence (``num_skipped_interactions``), and users left with fewer than
``min_sequence_length`` items are dropped (``num_skipped_users``).

Synthetic data ([`make_synthetic_recommendation`]): every item has one latent factor per
modality, each modality's content shows only its own factor (words, colour, tone, motion), and a
user's next item follows a Markov chain on all factors. So each modality carries part of the signal
and an encoder that sees more modalities can predict more.
"""

from __future__ import annotations

import csv
import html
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

__all__ = ["PRESETS", "RecommendationData", "build_item_inputs", "load_recommendation_data", "sequences_from_interactions", "make_synthetic_recommendation",
           "synthetic_backbone_configs"]


@dataclass
class RecommendationData:
    """Items and user sequences. Row ``i`` of every item field is internal item id ``i`` (0 = padding).

    Args:
        item_ids: raw item ids (``item_ids[0] == "<pad>"``).
        titles: item titles (``""`` for padding and items without text).
        sequences: per user, internal item ids in time order.
        user_ids: raw user ids.
        item_inputs: backbone inputs per modality (synthetic data), ``{m: {name: [n_items, ...]}}``.
        item_available: ``{m: bool [n_items]}``, which items have modality ``m`` (absent key: all do).
        item_factors: ``[n_items, M]`` latent factors (synthetic data).
        image_paths: per item, a cover image path or None (MicroLens-style folders).
    """

    item_ids: list[str]
    titles: list[str]
    sequences: list[list[int]]
    user_ids: list[str]
    num_skipped_interactions: int = 0
    num_skipped_users: int = 0
    item_inputs: dict = field(default_factory=dict)
    item_available: dict = field(default_factory=dict)
    item_factors: torch.Tensor | None = None
    image_paths: list | None = None

    @property
    def num_items(self) -> int:
        """Rows of the item table, padding included."""
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        """Items in all kept sequences (repeats counted)."""
        return sum(len(s) for s in self.sequences)

    def leave_one_out(self, max_seq_len: int = 10):
        """``DatasetDict(train, validation, test)`` with the official leave-one-out split.

        - train: ``item_ids`` = the last ``max_seq_len + 1`` items of ``seq[:-2]``, left-padded with 0
          (every position predicts the next one);
        - validation / test: ``item_ids`` = the last ``max_seq_len`` items before the target
          (left-padded), ``labels`` = ``seq[-2]`` / ``seq[-1]``, ``history`` = every earlier item (masked
          in full ranking).
        """
        from datasets import Dataset, DatasetDict

        if max_seq_len < 1:
            raise ValueError(f"`max_seq_len` must be >= 1, got {max_seq_len}.")
        pad = lambda s, n: [0] * (n - len(s[-n:])) + s[-n:]  # noqa: E731
        train, valid, test = ([], [], [])
        for seq in self.sequences:
            if len(seq) < 3:
                raise ValueError(f"Leave-one-out needs at least 3 items per user, a user has {len(seq)}.")
            if len(seq) >= 4:  # seq[:-2] must hold an (input, next item) pair
                train.append({"item_ids": pad(seq[:-2], max_seq_len + 1)})
            valid.append({"item_ids": pad(seq[:-2], max_seq_len), "labels": seq[-2], "history": seq[:-2]})
            test.append({"item_ids": pad(seq[:-1], max_seq_len), "labels": seq[-1], "history": seq[:-1]})
        return DatasetDict(train=Dataset.from_list(train), validation=Dataset.from_list(valid),
                           test=Dataset.from_list(test))

    def popularity(self) -> torch.Tensor:
        """Interaction counts of every item in the training part (``seq[:-2]``), ``[n_items]``."""
        counts = torch.zeros(self.num_items)
        for seq in self.sequences:
            for i in seq[:-2]:
                counts[i] += 1
        return counts

    def subset(self, num_users: int, seed: int = 0) -> RecommendationData:
        """A random subset of users, with the item table reduced to the items they use (ids remapped)."""
        rng = random.Random(seed)
        keep = sorted(rng.sample(range(len(self.sequences)), min(num_users, len(self.sequences))))
        used = sorted({i for u in keep for i in self.sequences[u]})
        rows = [0] + used
        new_id = {old: new for new, old in enumerate(rows)}
        index = torch.tensor(rows)
        return replace(
            self,
            item_ids=[self.item_ids[i] for i in rows], titles=[self.titles[i] for i in rows],
            sequences=[[new_id[i] for i in self.sequences[u]] for u in keep],
            user_ids=[self.user_ids[u] for u in keep],
            item_inputs={m: {k: v[index] for k, v in d.items()} for m, d in self.item_inputs.items()},
            item_available={m: a[index] for m, a in self.item_available.items()},
            item_factors=None if self.item_factors is None else self.item_factors[index],
            image_paths=None if self.image_paths is None else [self.image_paths[i] for i in rows],
        )


def _find(folder: Path, patterns: tuple[str, ...], what: str) -> Path:
    for pattern in patterns:
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"No {what} file in {folder} (looked for {', '.join(patterns)}).")


def _read_table(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        if path.suffix == ".csv":
            rows = list(csv.reader(f))
            return rows[1:] if rows and not rows[0][0].strip().isdigit() else rows  # skip a header line
        return [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]


#: Named preprocessing presets of [`load_recommendation_data`].
#: ``"iisan"``: the official IISAN pipeline (GAIR-Lab/IISAN ``data_utils/preprocess.py::read_behaviors``,
#: ``min_seq_len=5``, ``max_seq_len=10``): users with at least 5 interactions, the last
#: ``max_seq_len + 3 = 13`` items of each sequence, and only the items those keep.
PRESETS = {"iisan": {"min_sequence_length": 5, "max_sequence_length": 13}}


def load_recommendation_data(path: str | Path, min_sequence_length: int | None = None,
                             keep_unused_items: bool = False, max_sequence_length: int | None = None,
                             preset: str | None = None) -> RecommendationData:
    """Load the IISAN TSV layout or a MicroLens-style folder from ``path`` (see the module docstring).

    Args:
        path: the data folder.
        min_sequence_length: users with fewer (known) items are dropped (default 3, the least
            leave-one-out needs).
        keep_unused_items: keep items that no kept sequence uses in the item table.
        max_sequence_length: keep only the last ``max_sequence_length`` items of each sequence
            (``None``: all of them). Applied after the user filter, as the official pipeline does.
        preset: a named preprocessing, ``"iisan"`` (see [`PRESETS`]: on the IISAN papers'
            Instrument data, 10,000 users, 19,246 items, 75,022 interactions). Explicit arguments
            that contradict the preset are refused.
    """
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"`preset` must be one of {sorted(PRESETS)} or None, got {preset!r}.")
        for name, value in PRESETS[preset].items():
            given = locals()[name]
            if given is not None and given != value:
                raise ValueError(f"`{name}`={given} contradicts `preset`={preset!r} ({name}={value}).")
        min_sequence_length = PRESETS[preset]["min_sequence_length"]
        max_sequence_length = PRESETS[preset]["max_sequence_length"]
    min_sequence_length = 3 if min_sequence_length is None else min_sequence_length
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"`path` {str(folder)!r} is not a directory.")
    if min_sequence_length < 3:
        raise ValueError(f"`min_sequence_length` must be >= 3 for leave-one-out, got {min_sequence_length}.")
    if max_sequence_length is not None and max_sequence_length < min_sequence_length:
        raise ValueError(f"`max_sequence_length` ({max_sequence_length}) must be >= `min_sequence_length` "
                         f"({min_sequence_length}).")
    items_file = _find(folder, ("items.tsv", "*items*.tsv", "*title*.tsv", "*title*.csv"), "item table")
    users_file = _find(folder, ("users.tsv", "*users*.tsv", "*pairs*.tsv", "*pairs*.csv"), "user sequence")
    title_of = {row[0].strip(): html.unescape(row[1]).strip() if len(row) > 1 else "" for row in _read_table(items_file)}
    raw_sequences, user_ids, skipped_interactions, skipped_users = [], [], 0, 0
    for row in _read_table(users_file):
        items = row[1].split() if len(row) > 1 else []
        known = [i for i in items if i in title_of]
        skipped_interactions += len(items) - len(known)
        if len(known) < min_sequence_length:
            skipped_users += 1
            continue
        raw_sequences.append(known[-max_sequence_length:] if max_sequence_length else known)
        user_ids.append(row[0].strip())
    return _build_data(raw_sequences, user_ids, title_of, keep_unused_items, skipped_interactions, skipped_users,
                       folder / "covers")


def _build_data(raw_sequences, user_ids, title_of, keep_unused_items, skipped_interactions=0, skipped_users=0,
                covers: Path | None = None) -> RecommendationData:
    used = title_of if keep_unused_items else dict.fromkeys(i for s in raw_sequences for i in s)
    item_ids = ["<pad>"] + sorted(used)
    index = {raw: i for i, raw in enumerate(item_ids)}
    image_paths = None
    if covers is not None and covers.is_dir():
        image_paths = [None] + [next(iter(covers.glob(f"{i}.*")), None) for i in item_ids[1:]]
    return RecommendationData(
        item_ids=item_ids, titles=[""] + [title_of.get(i, "") for i in item_ids[1:]],
        sequences=[[index[i] for i in s] for s in raw_sequences], user_ids=user_ids,
        num_skipped_interactions=skipped_interactions, num_skipped_users=skipped_users, image_paths=image_paths)


# ------------------------------------------------------------------------------------- own data


def _columns(table, names: list[str]) -> dict[str, list]:
    """Columns of a pandas DataFrame, a datasets.Dataset, a dict of lists or a list of row dicts."""
    if isinstance(table, list):
        table = {n: [row[n] for row in table] for n in names} if table else {n: [] for n in names}
    try:
        cols = {n: list(table[n]) for n in names}
    except (KeyError, ValueError) as e:
        have = list(getattr(table, "column_names", None) or getattr(table, "columns", None) or table.keys())
        raise ValueError(f"The interactions table needs columns {names}; it has {have}.") from e
    if len({len(c) for c in cols.values()}) != 1:
        raise ValueError(f"The interactions table's columns {names} have different lengths.")
    return cols


def sequences_from_interactions(table, user_column: str = "user_id", item_column: str = "item_id",
                                timestamp_column: str | None = "timestamp", titles: dict | None = None,
                                image_paths: dict | None = None, min_sequence_length: int | None = None,
                                max_sequence_length: int | None = None, preset: str | None = None) -> RecommendationData:
    """Turn an interactions table (one row per user, item, time) into [`RecommendationData`].

    Each user's items are put in time order (ties and ``timestamp_column=None`` keep the table's
    order); items get internal ids ``1..n`` (0 = padding) in sorted raw-id order, as
    [`load_recommendation_data`] does, and the same filters and presets apply.

    Args:
        table: a pandas ``DataFrame``, a ``datasets.Dataset``, a dict of columns or a list of row dicts.
        user_column / item_column / timestamp_column: column names (``timestamp_column`` may be None).
        titles: ``{raw item id: title}`` (items without one get ``""``).
        image_paths: ``{raw item id: image path}`` (see [`build_item_inputs`]).
        min_sequence_length / max_sequence_length / preset: as in [`load_recommendation_data`].

    Example::

        data = sequences_from_interactions(df, "user", "item", "time", titles=dict(zip(items.id, items.title)))
        splits = data.leave_one_out()
    """
    names = [user_column, item_column] + ([timestamp_column] if timestamp_column else [])
    cols = _columns(table, names)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"`preset` must be one of {sorted(PRESETS)} or None, got {preset!r}.")
        min_sequence_length = PRESETS[preset]["min_sequence_length"]
        max_sequence_length = PRESETS[preset]["max_sequence_length"]
    min_sequence_length = 3 if min_sequence_length is None else min_sequence_length
    if min_sequence_length < 3:
        raise ValueError(f"`min_sequence_length` must be >= 3 for leave-one-out, got {min_sequence_length}.")
    rows = range(len(cols[user_column]))
    order = sorted(rows, key=lambda r: cols[timestamp_column][r]) if timestamp_column else list(rows)  # stable
    per_user: dict = {}
    for r in order:
        per_user.setdefault(str(cols[user_column][r]), []).append(str(cols[item_column][r]))
    raw_sequences, user_ids, skipped = [], [], 0
    for user, seq in per_user.items():
        if len(seq) < min_sequence_length:
            skipped += 1
            continue
        raw_sequences.append(seq[-max_sequence_length:] if max_sequence_length else seq)
        user_ids.append(user)
    title_of = {str(k): str(v) for k, v in (titles or {}).items()}
    data = _build_data(raw_sequences, user_ids, title_of, False, 0, skipped)
    if image_paths is not None:
        paths = {str(k): v for k, v in image_paths.items()}
        data.image_paths = [None] + [paths.get(i) for i in data.item_ids[1:]]
    return data


def build_item_inputs(data: RecommendationData, tokenizer=None, image_processor=None, max_length: int = 30,
                      lowercase: bool = True, batch_size: int = 256) -> tuple[dict, dict]:
    """Backbone inputs of every item (row ``i`` = item id ``i``) for ``adapter.set_item_inputs(*...)``.

    Args:
        data: from [`load_recommendation_data`] or [`sequences_from_interactions`].
        tokenizer: any transformers tokenizer: titles become ``{"text": {"input_ids", "attention_mask", ...}}``
            (padded to ``max_length``; the IISAN papers use 30 tokens, lower-cased titles).
        image_processor: any transformers image processor: ``data.image_paths`` become
            ``{"image": {"pixel_values"}}``; items without an image get zeros and are marked missing in
            the returned availability (``{"image": bool [n_items]}``).
        batch_size: images opened and processed at a time.

    Returns:
        ``(item_inputs, available)``.
    """
    if tokenizer is None and image_processor is None:
        raise ValueError("Pass a `tokenizer`, an `image_processor`, or both.")
    inputs, available = {}, {}
    if tokenizer is not None:
        titles = [t.lower() if lowercase else t for t in data.titles]
        enc = tokenizer(titles, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        inputs["text"] = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
    if image_processor is not None:
        if data.image_paths is None:
            raise ValueError("`image_processor` was given but the data has no `image_paths` (a `covers/` folder, or "
                             "`image_paths=` of `sequences_from_interactions`).")
        from PIL import Image

        have = [i for i, p in enumerate(data.image_paths) if p is not None]
        if not have:
            raise ValueError("No item has an image path.")
        chunks = []
        for start in range(0, len(have), batch_size):
            images = []
            for i in have[start:start + batch_size]:
                with Image.open(data.image_paths[i]) as im:
                    images.append(im.convert("RGB"))
            chunks.append(image_processor(images=images, return_tensors="pt")["pixel_values"])
        pixels = torch.cat(chunks)
        table = torch.zeros((data.num_items, *pixels.shape[1:]), dtype=pixels.dtype)
        table[torch.tensor(have)] = pixels
        inputs["image"] = {"pixel_values": table}
        available["image"] = torch.zeros(data.num_items, dtype=torch.bool).index_fill_(0, torch.tensor(have), True)
        available["image"][0] = True  # the padding item: never ranked, its (zero) image is harmless
    return inputs, available


# ------------------------------------------------------------------------------------- synthetic

TEXT_LEN, WORDS_PER_VALUE, NOISE_WORDS = 8, 4, 16
PAD, CLS, SEP = 0, 1, 2


def synthetic_backbone_configs(modalities=("text", "image"), factor_values: int = 4) -> dict:
    """Tiny transformers encoder configs that read [`make_synthetic_recommendation`]'s inputs."""
    from transformers import ASTConfig, BertConfig, VideoMAEConfig, ViTConfig

    make = {
        "text": lambda: BertConfig(vocab_size=3 + factor_values * WORDS_PER_VALUE + NOISE_WORDS, hidden_size=48,
                                   num_hidden_layers=4, num_attention_heads=4, intermediate_size=96,
                                   max_position_embeddings=TEXT_LEN + 2),
        "image": lambda: ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=6,
                                   num_attention_heads=4, intermediate_size=64),
        "audio": lambda: ASTConfig(num_mel_bins=16, max_length=32, patch_size=8, frequency_stride=8, time_stride=8,
                                   hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64),
        "video": lambda: VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, num_channels=3,
                                        hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                                        intermediate_size=64, use_mean_pooling=False),
    }
    unknown = sorted(set(modalities) - set(make))
    if unknown:
        raise ValueError(f"No synthetic encoder for modalities {unknown}; known: {sorted(make)}.")
    return {m: make[m]() for m in modalities}


def _synthetic_content(modality: str, f: np.ndarray, F: int, rng: np.random.Generator, noise: float) -> dict:
    n = len(f)
    if modality == "text":  # words from the factor's vocabulary mixed with noise words
        own = 3 + f[:, None] * WORDS_PER_VALUE + rng.integers(0, WORDS_PER_VALUE, (n, TEXT_LEN))
        filler = 3 + F * WORDS_PER_VALUE + rng.integers(0, NOISE_WORDS, (n, TEXT_LEN))
        words = np.where(rng.random((n, TEXT_LEN)) < 0.5, own, filler)
        ids = np.concatenate([np.full((n, 1), CLS), words, np.full((n, 1), SEP)], 1)
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(n, TEXT_LEN + 2, dtype=torch.long)}
    if modality == "image":  # a colour per factor value, plus pixel noise
        hue = np.stack([np.cos(2 * np.pi * f / F), np.sin(2 * np.pi * f / F), np.cos(4 * np.pi * f / F)], 1)
        img = hue[:, :, None, None] + noise * rng.standard_normal((n, 3, 16, 16))
        return {"pixel_values": torch.tensor(img, dtype=torch.float32)}
    if modality == "audio":  # a tone per factor value: waveform -> log power spectrogram in 16 bands
        t = np.arange(1024) / 1600  # 1600 Hz sampling
        wave = np.sin(2 * np.pi * (100 + 600 * f[:, None] / F) * t) + noise * rng.standard_normal((n, len(t)))
        spec = torch.stft(torch.tensor(wave, dtype=torch.float32), n_fft=62, hop_length=32,
                          window=torch.hann_window(62), return_complex=True).abs() ** 2  # [n, 32, frames]
        bands = spec[:, :32].reshape(n, 16, 2, -1).sum(2)[..., :32]  # [n, 16 bins, 32 frames]
        return {"input_values": torch.log1p(bands).transpose(1, 2).contiguous()}  # AST: [n, time, mel]
    if modality == "video":  # a bright bar moving right at a speed per factor value
        frames = noise * rng.standard_normal((n, 4, 3, 16, 16))
        for i in range(n):
            for t in range(4):
                frames[i, t, :, :, (t * (1 + int(f[i])) * 2) % 16] += 2.0
        return {"pixel_values": torch.tensor(frames, dtype=torch.float32)}
    raise ValueError(f"No synthetic content for modality {modality!r}.")


def make_synthetic_recommendation(num_users: int = 400, modalities=("text", "image"), factor_values: int = 4,
                                  items_per_type: int = 4, min_length: int = 6, max_length: int = 12,
                                  stay_probability: float = 0.15, noise: float = 0.5, zero_modalities=(),
                                  missing: dict | None = None, seed: int = 0) -> RecommendationData:
    """A multimodal recommendation set in which each modality carries part of the signal.

    Every item has one latent factor ``f_m`` in ``{0..F-1}`` per modality; its text shows ``f_text``
    (words), its image ``f_image`` (colour), its audio ``f_audio`` (tone), its video ``f_video``
    (motion speed). There are ``items_per_type`` items per factor combination. From an item with
    factors ``f``, the next item's factors are ``f_m + 1 mod F`` for each modality independently
    (``f_m`` with probability ``stay_probability``), and the item is uniform within that type. A
    model that reads k of the M modalities can narrow the next item down by k factors.

    Args:
        zero_modalities: modalities whose content is replaced by zeros (they carry no signal).
        missing: ``{modality: fraction}`` of items that lack the modality (see ``item_available``).
    """
    modalities = list(modalities)
    if not modalities:
        raise ValueError("`modalities` must name at least one modality.")
    if not 3 <= min_length <= max_length:
        raise ValueError(f"Need 3 <= `min_length` <= `max_length`, got {min_length}, {max_length}.")
    rng = np.random.default_rng(seed)
    M, F = len(modalities), factor_values
    types = np.stack(np.meshgrid(*[np.arange(F)] * M, indexing="ij"), -1).reshape(-1, M)  # [F^M, M]
    factors = np.repeat(types, items_per_type, 0)  # item i (1-based) has factors[i-1]
    n_items = len(factors)
    type_code = lambda f: int(np.ravel_multi_index(tuple(f), (F,) * M))  # noqa: E731
    sequences = []
    for _ in range(num_users):
        f = types[rng.integers(len(types))]
        seq = []
        for _ in range(rng.integers(min_length, max_length + 1)):
            seq.append(1 + type_code(f) * items_per_type + int(rng.integers(items_per_type)))
            f = np.where(rng.random(M) < stay_probability, f, (f + 1) % F)
        sequences.append(seq)
    item_inputs, available = {}, {}
    all_f = np.concatenate([np.zeros((1, M), dtype=int), factors])  # row 0: padding item
    for j, m in enumerate(modalities):
        content = _synthetic_content(m, all_f[:, j], F, rng, noise)
        if m in zero_modalities:
            content = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in content.items()}
        item_inputs[m] = content
        if missing and m in missing:
            available[m] = torch.tensor(rng.random(n_items + 1) >= missing[m])
    titles = [""] + [" ".join(f"{m}{v}" for m, v in zip(modalities, f)) for f in factors]
    return RecommendationData(item_ids=["<pad>"] + [f"item{i}" for i in range(1, n_items + 1)], titles=titles,
                              sequences=sequences, user_ids=[f"user{u}" for u in range(num_users)],
                              item_inputs=item_inputs, item_available=available, item_factors=torch.tensor(all_f))
