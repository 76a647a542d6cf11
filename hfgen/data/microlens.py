"""MicroLens-style micro-video tables: a loader for real data by path and a synthetic generator.

The columns follow ``junchenfu/microlens_rag`` (LLMPopcorn's retrieval table): ``video_id, title_en,
cover_desc, caption_en, partition, likes, views, comment_count``. The popularity label is MMRA's:
the log of the comment count, here ``log2(1 + comment_count)`` so that videos without comments are
defined (MMRA's ``log2(comments)`` on its data, where every video has comments).
Media columns, when present: ``cover`` (one image) and ``frames`` (a list of images, in time order).

The synthetic table is built so that popularity depends, by a known rule, on all three modalities a
popularity model sees:

- title: "hook" words raise it, "dull" words lower it;
- cover: brightness raises it (the cover description says "bright"/"dim" accordingly);
- frames: motion (a square moving across the frames) raises it (the caption says "fast-paced"/"slow").

so a regressor that uses title, cover and frames can beat one that uses any single modality.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

MICROLENS_COLUMNS = ("video_id", "title_en", "cover_desc", "caption_en", "partition", "likes", "views", "comment_count")

PARTITIONS = {
    "anime": ["naruto fight", "anime opening", "manga panel", "cosplay look"],
    "games": ["boss battle", "speedrun", "minecraft build", "esports clutch"],
    "food": ["ramen recipe", "street food", "cake decorating", "spicy noodles"],
    "pets": ["kitten", "puppy training", "parrot", "hamster maze"],
    "travel": ["mountain hike", "tokyo night", "beach sunset", "road trip"],
    "sports": ["basketball dunk", "skateboard trick", "football goal", "gym workout"],
}
PARTITION_EFFECT = {"anime": 0.4, "games": 0.3, "food": 0.0, "pets": 0.2, "travel": -0.2, "sports": -0.1}
HOOK_WORDS = ("epic", "secret", "insane", "ultimate", "shocking", "hilarious")
DULL_WORDS = ("routine", "update", "notes", "basic", "plain", "ordinary")
NEUTRAL_WORDS = ("weekend", "classic", "small", "new", "my", "first")
TITLE_TEMPLATES = ("{adj} {noun} moments", "{adj} {noun} challenge", "{adj} {noun} story", "{adj} {noun} compilation")
COLORS = {"red": (220, 40, 40), "green": (40, 180, 70), "blue": (40, 80, 220), "yellow": (230, 210, 40),
          "purple": (150, 60, 200), "orange": (240, 140, 30)}
HOOK_EFFECT, DULL_EFFECT = 1.5, -1.0
BRIGHTNESS_EFFECT, MOTION_EFFECT, BASE_LOG2, NOISE_STD = 2.4, 2.0, 5.0, 0.4


def log_popularity(comment_count) -> np.ndarray:
    """MMRA's label: ``log2(1 + comment_count)``."""
    return np.log2(1.0 + np.asarray(comment_count, dtype=np.float64))


def title_effect(title: str) -> float:
    """The synthetic rule's title term: +1.5 per hook word, -1.0 per dull word."""
    words = title.lower().split()
    return HOOK_EFFECT * sum(w in HOOK_WORDS for w in words) + DULL_EFFECT * sum(w in DULL_WORDS for w in words)


def render_cover(color: str, brightness: float, size: int = 32, rng: np.random.Generator | None = None) -> Image.Image:
    """A cover: a coloured background scaled by ``brightness`` with a lighter disc (the subject)."""
    rng = rng or np.random.default_rng(0)
    base = np.array(COLORS[color], dtype=np.float64) * brightness
    img = Image.new("RGB", (size, size), tuple(int(c) for c in base))
    r = size // 4
    cx, cy = rng.integers(r, size - r, size=2)
    ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(min(255, c + 60)) for c in base))
    return img


def render_frames(color: str, motion: float, num_frames: int = 4, size: int = 32,
                  rng: np.random.Generator | None = None) -> list[Image.Image]:
    """Frames of a square moving ``motion * size / 2`` pixels per frame in a random direction (wraps around)."""
    rng = rng or np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi)
    step = motion * size / 2 * np.array([np.cos(angle), np.sin(angle)])
    start = rng.uniform(0, size, size=2)
    side = size // 3
    frames = []
    for t in range(num_frames):
        img = Image.new("RGB", (size, size), (30, 30, 30))
        x, y = (start + t * step) % size
        ImageDraw.Draw(img).rectangle((x - side / 2, y - side / 2, x + side / 2, y + side / 2), fill=COLORS[color])
        frames.append(img)
    return frames


def render_plan(title: str, cover_prompt: str, video_prompt: str, num_frames: int = 4, size: int = 32,
                seed: int = 0) -> tuple[Image.Image, list[Image.Image], float]:
    """Render a plan in the synthetic world, as a generator that follows its prompts would: a colour named in
    the cover prompt, "bright"/"dim" brightness (0.8 / 0.3, else 0.55), "fast-paced"/"slow" motion (0.8 / 0.2,
    else 0.5). Returns the cover, the frames and the rule's expected ``log2(1 + comments)`` (no noise, no
    partition term)."""
    rng = np.random.default_rng(seed)
    words = set(re.findall(r"[a-z-]+", cover_prompt.lower()))
    color = next((c for c in sorted(COLORS) if c in words), sorted(COLORS)[seed % len(COLORS)])
    brightness = 0.8 if "bright" in words else 0.3 if "dim" in words else 0.55
    vwords = set(re.findall(r"[a-z-]+", video_prompt.lower()))
    motion = 0.8 if "fast-paced" in vwords else 0.2 if "slow" in vwords else 0.5
    expected = (BASE_LOG2 + title_effect(title) + BRIGHTNESS_EFFECT * (brightness - 0.55) + MOTION_EFFECT * (motion - 0.5))
    return render_cover(color, brightness, size, rng), render_frames(color, motion, num_frames, size, rng), expected


def make_synthetic_microlens(num_videos: int = 240, num_frames: int = 4, image_size: int = 32, seed: int = 0,
                             with_media: bool = True):
    """A synthetic MicroLens-style ``datasets.Dataset`` whose popularity follows a known rule.

    ``log2(1 + comments) = 5 + title_effect + 2.4 (brightness - 0.55) + 2.0 (motion - 0.5)
    + partition_effect + N(0, 0.4^2)``; ``likes`` and ``views`` are drawn around it. Each row also holds
    the exact ``log_popularity`` (the label) and, with ``with_media``, a ``cover`` and ``frames``.
    """
    import datasets

    if num_videos < 1 or num_frames < 1 or image_size < 8:
        raise ValueError(f"`num_videos` and `num_frames` must be >= 1 and `image_size` >= 8, got "
                         f"{num_videos}, {num_frames}, {image_size}.")
    rng = np.random.default_rng(seed)
    names = sorted(PARTITIONS)
    rows: dict[str, list] = {c: [] for c in (*MICROLENS_COLUMNS, "log_popularity")}
    if with_media:
        rows["cover"], rows["frames"] = [], []
    for i in range(num_videos):
        partition = names[rng.integers(len(names))]
        noun = PARTITIONS[partition][rng.integers(len(PARTITIONS[partition]))]
        kind = rng.choice(["hook", "dull", "neutral"])
        pool = {"hook": HOOK_WORDS, "dull": DULL_WORDS, "neutral": NEUTRAL_WORDS}[kind]
        title = TITLE_TEMPLATES[rng.integers(len(TITLE_TEMPLATES))].format(adj=pool[rng.integers(len(pool))], noun=noun)
        color = sorted(COLORS)[rng.integers(len(COLORS))]
        brightness, motion = rng.uniform(0.15, 0.95), rng.uniform(0.0, 1.0)
        cover_desc = f"a {'bright' if brightness > 0.55 else 'dim'} {color} cover of {noun}"
        caption = f"a {'fast-paced' if motion > 0.5 else 'slow'} clip of {noun} in {partition}"
        y = (BASE_LOG2 + title_effect(title) + BRIGHTNESS_EFFECT * (brightness - 0.55) + MOTION_EFFECT * (motion - 0.5)
             + PARTITION_EFFECT[partition] + NOISE_STD * rng.standard_normal())
        comments = max(0, int(round(2.0 ** y - 1)))
        likes = int(comments * rng.uniform(5, 20))
        for key, value in (("video_id", i), ("title_en", title), ("cover_desc", cover_desc), ("caption_en", caption),
                           ("partition", partition), ("likes", likes), ("views", int(likes * rng.uniform(10, 50))),
                           ("comment_count", comments), ("log_popularity", float(log_popularity(comments)))):
            rows[key].append(value)
        if with_media:
            rows["cover"].append(render_cover(color, brightness, image_size, rng))
            rows["frames"].append(render_frames(color, motion, num_frames, image_size, rng))
    features = None
    if with_media:
        features = datasets.Features({
            **{c: datasets.Value("string") for c in ("title_en", "cover_desc", "caption_en", "partition")},
            **{c: datasets.Value("int64") for c in ("video_id", "likes", "views", "comment_count")},
            "log_popularity": datasets.Value("float64"),
            "cover": datasets.Image(), "frames": datasets.Sequence(datasets.Image()),
        })
    return datasets.Dataset.from_dict(rows, features=features)


def load_microlens(path: str | os.PathLike, covers_dir: str | os.PathLike | None = None,
                   frames_dir: str | os.PathLike | None = None, num_frames: int | None = None):
    """Load a MicroLens-style table (``.csv``, ``.json``/``.jsonl`` or ``.parquet``) as a ``datasets.Dataset``.

    Args:
        path: the table; it must have the columns of [`MICROLENS_COLUMNS`] except that ``likes``
            and ``views`` may be missing (LLMPopcorn and MMRA use only ``comment_count``).
        covers_dir: optional folder of covers named ``<video_id>.jpg`` (or ``.png``), as MicroLens ships them.
        frames_dir: optional folder with one sub-folder of frame images per ``video_id`` (sorted by name),
            e.g. MicroLens' pre-cut ``frames_interval_1_number_5`` frames.
        num_frames: keep this many frames, sampled uniformly (``np.linspace``, as MMRA does).
    """
    import datasets

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MicroLens table {str(path)!r} does not exist.")
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}.get(path.suffix)
    if builder is None:
        raise ValueError(f"`path` must be a .csv, .json, .jsonl or .parquet table, got {path.name!r}.")
    table = datasets.load_dataset(builder, data_files=str(path), split="train")
    missing = [c for c in ("video_id", "title_en", "cover_desc", "caption_en", "partition", "comment_count")
               if c not in table.column_names]
    if missing:
        raise ValueError(f"MicroLens table {path.name!r} lacks the column(s) {missing}; it has {table.column_names}.")
    table = table.map(lambda r: {"log_popularity": float(log_popularity(r["comment_count"]))})
    if covers_dir is not None:
        covers_dir = Path(covers_dir)

        def cover_of(row):
            for ext in (".jpg", ".png", ".jpeg"):
                if (covers_dir / f"{row['video_id']}{ext}").is_file():
                    return {"cover": str(covers_dir / f"{row['video_id']}{ext}")}
            raise FileNotFoundError(f"no cover for video {row['video_id']} in {covers_dir}.")

        table = table.map(cover_of).cast_column("cover", datasets.Image())
    if frames_dir is not None:
        frames_dir = Path(frames_dir)

        def frames_of(row):
            files = sorted(p for p in (frames_dir / str(row["video_id"])).glob("*") if p.suffix.lower() in (".jpg", ".png", ".jpeg"))
            if not files:
                raise FileNotFoundError(f"no frames for video {row['video_id']} in {frames_dir}.")
            if num_frames:
                files = [files[i] for i in np.linspace(0, len(files) - 1, num_frames).round().astype(int)]
            return {"frames": [str(p) for p in files]}

        table = table.map(frames_of).cast_column("frames", datasets.Sequence(datasets.Image()))
    return table


SPLIT_NAMES = ("retrieval_pool", "popularity_train", "popularity_eval")


def split_microlens(table, retrieval_fraction: float = 0.4, eval_fraction: float = 0.2, seed: int = 0):
    """Split a MicroLens-style table into three parts with no video in two of them (LLMPopcorn evaluation).

    - ``retrieval_pool``: the only videos the LLM's prompt enhancement may retrieve as references;
    - ``popularity_train``: the popularity model's training set, and its MMRA retrieval memory;
    - ``popularity_eval``: held out from both, to measure the popularity model.

    Without this split the popularity model is trained on the very videos the LLM copies from, so
    "enhanced beats basic" holds by construction. Rows are grouped by ``video_id`` (all rows of one id go
    to one part); the ids are shuffled with ``seed``.

    Args:
        table: a ``datasets.Dataset`` with a ``video_id`` column.
        retrieval_fraction (`float`), eval_fraction (`float`): shares of the ids in the pool and the held-out
            set (each in ``(0, 1)``, summing to less than 1); the popularity model trains on the rest.
        seed (`int`): seed of the id shuffle.

    Returns:
        `datasets.DatasetDict` with the splits [`SPLIT_NAMES`].
    """
    import datasets

    for name, value in (("retrieval_fraction", retrieval_fraction), ("eval_fraction", eval_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise ValueError(f"`{name}` must be a fraction in (0, 1), got {value!r}.")
    if retrieval_fraction + eval_fraction >= 1.0:
        raise ValueError(f"`retrieval_fraction` + `eval_fraction` must be < 1 to leave a training set, got "
                         f"{retrieval_fraction} + {eval_fraction}.")
    if "video_id" not in table.column_names:
        raise ValueError(f"`table` needs a `video_id` column to split on; it has {table.column_names}.")
    ids = np.array(table["video_id"])
    unique = np.unique(ids)
    if len(unique) < 3:
        raise ValueError(f"`table` has {len(unique)} distinct video ids; three non-empty splits need at least 3.")
    order = unique[np.random.default_rng(seed).permutation(len(unique))]
    n_pool = max(1, round(retrieval_fraction * len(unique)))
    n_eval = max(1, round(eval_fraction * len(unique)))
    if n_pool + n_eval >= len(unique):
        raise ValueError(f"`table` has too few videos ({len(unique)}) for these fractions.")
    part = {"retrieval_pool": order[:n_pool], "popularity_eval": order[n_pool:n_pool + n_eval],
            "popularity_train": order[n_pool + n_eval:]}
    return datasets.DatasetDict({name: table.select(np.flatnonzero(np.isin(ids, part[name])))
                                 for name in SPLIT_NAMES})
