"""Faces with Action Unit (AU) and emotion labels: a parametric synthetic set and loaders for real layouts.

Synthetic faces ([`make_synthetic_faces`]) are drawn with PIL from known AU intensities, so every
label is exact: the brows carry AU1 (inner brow raiser), AU2 (outer brow raiser) and AU4 (brow lowerer,
with a furrow); the eyes AU5 (upper lid raiser); the cheeks AU6 (cheek raiser); the nose AU9 (nose
wrinkler); the mouth AU12 (lip corner puller), AU15 (lip corner depressor), AU20 (lip stretcher), AU23
(lip tightener) and AU26 (jaw drop). A face's emotion is *derived* from its AUs by the EMFACS
prototypes ([`EMOTION_PROTOTYPES`], [`emotion_from_aus`]), and every face comes with
MFA-style multilevel text (MF^2, arXiv 2504.10351): one description per AU (local level) and one
emotion description (global level), templated here in place of the paper's GPT-4o descriptions.

Loaders read the real data sets where they live, by path (all need a licence; none downloads):
[`load_disfa`], [`load_bp4d`] (AU occurrence), [`load_rafdb`], [`load_affectnet`]
(emotion) and [`load_mfa_json`] (images + multilevel descriptions). Each returns a
``datasets.Dataset`` with an ``image`` column (``datasets.Image``) and label columns.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# FACS names of the AUs the synthetic faces draw, with MFA-style state descriptions (present, absent).
AU_DESCRIPTIONS = {
    "AU1": ("inner brow raiser", "the inner corners of the brows are raised", "the inner brows are relaxed"),
    "AU2": ("outer brow raiser", "the outer corners of the brows are raised", "the outer brows are relaxed"),
    "AU4": ("brow lowerer", "the brows are lowered and drawn together with a furrow", "the brows are not lowered"),
    "AU5": ("upper lid raiser", "the upper lids are raised and the eyes are wide open", "the eyes are normally open"),
    "AU6": ("cheek raiser", "the cheeks are raised and flushed", "the cheeks are relaxed"),
    "AU9": ("nose wrinkler", "the nose is wrinkled", "the nose is smooth"),
    "AU12": ("lip corner puller", "the lip corners are pulled upward", "the lip corners are not pulled up"),
    "AU15": ("lip corner depressor", "the lip corners are pulled downward", "the lip corners are not pulled down"),
    "AU20": ("lip stretcher", "the lips are stretched wide", "the lips are not stretched"),
    "AU23": ("lip tightener", "the lips are tightened and thin", "the lips are relaxed"),
    "AU26": ("jaw drop", "the jaw drops and the mouth is open", "the mouth is closed"),
}
SYNTHETIC_AUS = tuple(AU_DESCRIPTIONS)

# EMFACS prototypes (Friesen & Ekman 1983), restricted to the AUs drawn here.
EMOTION_PROTOTYPES = {
    "neutral": (),
    "happy": ("AU6", "AU12"),
    "sad": ("AU1", "AU4", "AU15"),
    "surprise": ("AU1", "AU2", "AU5", "AU26"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU20", "AU26"),
    "angry": ("AU4", "AU5", "AU23"),
    "disgust": ("AU9", "AU15"),
}
EMOTIONS = tuple(EMOTION_PROTOTYPES)
EMOTION_DESCRIPTIONS = {
    "neutral": "the face looks neutral : the brows , eyes and mouth are relaxed",
    "happy": "the face looks happy : the cheeks are raised and the lip corners are pulled up into a smile",
    "sad": "the face looks sad : the inner brows are raised and drawn together and the lip corners are pulled down",
    "surprise": "the face looks surprised : the brows are raised , the eyes are wide open and the jaw drops",
    "fear": "the face looks fearful : the brows are raised and drawn together , the eyes are wide , "
            "the lips are stretched and the jaw drops",
    "angry": "the face looks angry : the brows are lowered , the eyes glare and the lips are pressed thin",
    "disgust": "the face looks disgusted : the nose is wrinkled and the lip corners are pulled down",
}
# A prototype must overlap the AU set at least this much (Jaccard) to name the emotion; else neutral.
EMOTION_MATCH_THRESHOLD = 0.5

# The real data sets' label sets (standard protocols).
DISFA_AUS = ("AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU25", "AU26")
BP4D_AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24")
RAFDB_EMOTIONS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}
AFFECTNET_EMOTIONS = {0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "angry",
                      7: "contempt"}

_AU_NAME = re.compile(r"^AU\d+$")


def check_au_names(au_names, known=None, name: str = "au_names") -> list[str]:
    """``au_names`` as a list, checked to look like ``'AU12'`` and (if ``known`` is given) to be known."""
    if isinstance(au_names, str) or not au_names:
        raise ValueError(f"`{name}` must be a non-empty list of AU names like 'AU12', got {au_names!r}.")
    au_names = list(au_names)
    bad = [a for a in au_names if not isinstance(a, str) or not _AU_NAME.match(a)]
    if bad:
        raise ValueError(f"`{name}` has names {bad} that are not AU names of the form 'AU<number>' (e.g. 'AU12').")
    if len(set(au_names)) != len(au_names):
        raise ValueError(f"`{name}` has duplicates: {au_names}.")
    if known is not None:
        unknown = [a for a in au_names if a not in known]
        if unknown:
            raise ValueError(f"`{name}` has unknown AUs {unknown}; known AUs: {list(known)}.")
    return au_names


# ------------------------------------------------------------------------------- text templates


def au_description(au: str, present: bool) -> str:
    """The local (AU-level) description of one AU's state, e.g. ``'au12 lip corner puller is present : ...'``."""
    name, on, off = AU_DESCRIPTIONS[au]
    return f"{au.lower()} {name} is {'present' if present else 'absent'} : {on if present else off}"


def emotion_description(emotion: str) -> str:
    """The global (emotion-level) description of a face."""
    return EMOTION_DESCRIPTIONS[emotion]


def emotion_prompts(emotions=EMOTIONS) -> list[str]:
    """Zero-shot emotion prompts, one per class (the emotion-level descriptions)."""
    return [emotion_description(e) for e in emotions]


def au_prompts(au_names=SYNTHETIC_AUS) -> tuple[list[str], list[str]]:
    """Zero-shot AU prompts: the 'present' and the 'absent' description of each AU."""
    check_au_names(au_names, AU_DESCRIPTIONS)
    return [au_description(a, True) for a in au_names], [au_description(a, False) for a in au_names]


def emotion_from_aus(active) -> str:
    """The emotion an AU set shows: the EMFACS prototype of highest Jaccard overlap (ties: table order).

    ``'neutral'`` when no prototype overlaps at least [`EMOTION_MATCH_THRESHOLD`].
    """
    active = set(active)
    best, best_score = "neutral", 0.0
    for emotion, proto in EMOTION_PROTOTYPES.items():
        if proto:
            score = len(active & set(proto)) / len(active | set(proto))
            if score > best_score:
                best, best_score = emotion, score
    return best if best_score >= EMOTION_MATCH_THRESHOLD else "neutral"


def build_face_tokenizer(extra_texts=()):
    """A word-level tokenizer (``PreTrainedTokenizerFast``) over the words of every template here.

    BERT-style special tokens (``[CLS] text [SEP]``, ``[PAD]``, ``[UNK]``); lower-cased; built offline.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    texts = [*EMOTION_DESCRIPTIONS.values(), *extra_texts]
    texts += [au_description(a, s) for a in AU_DESCRIPTIONS for s in (True, False)]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


# ---------------------------------------------------------------------------- synthetic faces


def sample_au_intensities(n: int, rng: np.random.Generator, au_names=SYNTHETIC_AUS, p_drop: float = 0.15,
                          p_add: float = 0.08) -> np.ndarray:
    """``[n, K]`` AU intensities in ``[0, 1]``: an emotion prototype with AUs dropped and stray AUs added.

    Active AUs get intensity ``U(0.5, 1)``, absent ones 0. AU12 and AU15 never co-occur (they pull the
    same lip corners in opposite directions).
    """
    K = len(au_names)
    index = {a: k for k, a in enumerate(au_names)}
    out = np.zeros((n, K), dtype=np.float32)
    for i in range(n):
        proto = EMOTION_PROTOTYPES[EMOTIONS[rng.integers(len(EMOTIONS))]]
        active = {a for a in proto if a in index and rng.random() >= p_drop}
        active |= {a for a in au_names if a not in proto and rng.random() < p_add}
        if "AU12" in active and "AU15" in active:
            active.discard("AU15" if "AU12" in proto else "AU12")
        for a in sorted(active, key=index.get):  # AU order, not set order (which follows PYTHONHASHSEED)
            out[i, index[a]] = rng.uniform(0.5, 1.0)
    return out


def render_face(intensity: dict, rng: np.random.Generator, image_size: int = 48, supersample: int = 2) -> np.ndarray:
    """One RGB face ``[H, W, 3]`` uint8 showing the given AU intensities (``{'AU12': 0.8, ...}``).

    Pose, scale, skin, background and pixel noise are random; the drawing is the face-coordinate
    geometry below (x, y in units of the face half-width, y down).
    """
    from PIL import Image, ImageDraw

    a = {au: float(intensity.get(au, 0.0)) for au in AU_DESCRIPTIONS}
    S = image_size * supersample
    bg = tuple(int(c) for c in rng.integers(90, 170, 3))
    img = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(img, "RGBA")
    s = S * 0.36 * rng.uniform(0.92, 1.08)
    cx, cy = S / 2 + rng.uniform(-0.05, 0.05) * S, S / 2 + rng.uniform(-0.04, 0.04) * S
    skin = np.array([224, 172, 140]) * rng.uniform(0.85, 1.05) + rng.uniform(-8, 8, 3)
    skin = tuple(int(c) for c in np.clip(skin, 40, 255))
    dark = (35, 25, 25, 255)
    w = max(1, round(0.09 * s))

    def P(x, y):
        return (cx + s * x, cy + s * y)

    jaw = 0.12 * a["AU26"]
    d.ellipse([*P(-1.0, -1.2), *P(1.0, 1.2 + jaw)], fill=skin)
    for side in (-1, 1):  # cheeks (AU6)
        if a["AU6"] > 0:
            d.ellipse([*P(side * 0.45 - 0.17, 0.12), *P(side * 0.45 + 0.17, 0.40)], fill=(215, 70, 70, int(150 * a["AU6"])))
        # eyes (AU5 widens, AU6 pushes the lower lid up)
        eh = 0.07 + 0.09 * a["AU5"] - 0.02 * a["AU6"]
        ex, ey = side * 0.38, -0.15
        d.ellipse([*P(ex - 0.13, ey - eh), *P(ex + 0.13, ey + eh)], fill=(245, 245, 245))
        d.ellipse([*P(ex - 0.05, ey - 0.05), *P(ex + 0.05, ey + 0.05)], fill=dark)
        # brows: inner end raised by AU1 and lowered/drawn in by AU4, outer end raised by AU2
        inner = P(side * (0.13 - 0.05 * a["AU4"]), -0.42 - 0.17 * a["AU1"] + 0.12 * a["AU4"])
        outer = P(side * 0.60, -0.44 - 0.17 * a["AU2"])
        d.line([inner, outer], fill=dark, width=w + 1)
    if a["AU4"] > 0:  # the glabellar furrow
        for x in (-0.04, 0.04):
            d.line([P(x, -0.36), P(x, -0.22)], fill=(60, 40, 40, int(255 * a["AU4"])), width=w)
    d.line([P(0.0, -0.08), P(-0.06, 0.22), P(0.06, 0.22)], fill=(120, 80, 70, 255), width=w)  # nose
    if a["AU9"] > 0:  # nose wrinkles
        for y in (-0.05, 0.03, 0.11):
            d.line([P(-0.13, y), P(0.13, y)], fill=(70, 40, 40, int(255 * a["AU9"])), width=w)
    # mouth: corners up (AU12) or down (AU15), wider (AU20), thinner and narrower (AU23), open (AU26)
    half = 0.30 * (1 + 0.40 * a["AU20"] - 0.20 * a["AU23"])
    corner = 0.55 - 0.16 * a["AU12"] + 0.16 * a["AU15"]
    opening = 0.26 * a["AU26"]
    xs = np.linspace(-1, 1, 9)
    upper = [P(half * x, corner + (0.55 - corner) * (1 - x * x) - opening / 2) for x in xs]
    lower = [P(half * x, corner + (0.55 - corner) * (1 - x * x) + opening / 2 + 0.02) for x in xs]
    if opening > 0.02:
        d.polygon(upper + lower[::-1], fill=(60, 15, 20, 255))
    lip = max(1, round(w * (1.6 - 1.0 * a["AU23"])))
    d.line(upper, fill=(150, 50, 60, 255), width=lip)
    d.line(lower, fill=(150, 50, 60, 255), width=lip)
    img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (image_size, image_size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


@dataclass
class SyntheticFaces:
    """A map-style data set of synthetic faces; item ``i`` is a dict ready for the MF^2 / DFN collators.

    Attributes:
        images: ``[N, H, W, 3]`` uint8.
        au_intensity: ``[N, K]`` in ``[0, 1]``; ``au_labels = au_intensity > 0``.
        emotions: ``[N]`` indices into ``emotion_names``.
        au_names, emotion_names: label names.
    """

    images: np.ndarray
    au_intensity: np.ndarray
    emotions: np.ndarray
    au_names: tuple[str, ...] = SYNTHETIC_AUS
    emotion_names: tuple[str, ...] = EMOTIONS

    @property
    def au_labels(self) -> np.ndarray:
        return (self.au_intensity > 0).astype(np.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        labels = self.au_labels[i]
        return {
            "pixel_values": pixel_values_from_images(self.images[i:i + 1])[0],
            "global_text": emotion_description(self.emotion_names[self.emotions[i]]),
            "au_texts": [au_description(a, bool(on)) for a, on in zip(self.au_names, labels)],
            "au_labels": labels,
            "emotion_labels": int(self.emotions[i]),
        }

    def pixel_values(self):
        """All images as one ``[N, 3, H, W]`` float tensor in ``[-1, 1]``."""
        return pixel_values_from_images(self.images)

    def subset(self, idx) -> SyntheticFaces:
        return SyntheticFaces(self.images[idx], self.au_intensity[idx], self.emotions[idx], self.au_names,
                              self.emotion_names)

    def to_dataset(self):
        """A ``datasets.Dataset`` (``image``, ``au_labels``, ``emotion``, ``global_text``, ``au_texts``)."""
        import datasets
        from PIL import Image

        rows = [self[i] for i in range(len(self))]
        return datasets.Dataset.from_dict({
            "image": [Image.fromarray(im) for im in self.images],
            "au_labels": [r["au_labels"].tolist() for r in rows],
            "emotion": [self.emotion_names[e] for e in self.emotions],
            "global_text": [r["global_text"] for r in rows],
            "au_texts": [r["au_texts"] for r in rows],
        }).cast_column("image", datasets.Image())


def make_synthetic_faces(n: int, image_size: int = 48, seed: int = 0, au_names=SYNTHETIC_AUS, p_drop: float = 0.15,
                         p_add: float = 0.08) -> SyntheticFaces:
    """``n`` synthetic faces with exact AU labels and EMFACS-derived emotions (deterministic in ``seed``)."""
    if n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n!r}.")
    if image_size < 16:
        raise ValueError(f"`image_size` must be at least 16 pixels, got {image_size!r}.")
    au_names = tuple(check_au_names(au_names, AU_DESCRIPTIONS))
    rng = np.random.default_rng(seed)
    intensity = sample_au_intensities(n, rng, au_names, p_drop, p_add)
    images = np.stack([render_face(dict(zip(au_names, row)), rng, image_size) for row in intensity])
    emotions = np.array([EMOTIONS.index(emotion_from_aus(a for a, v in zip(au_names, row) if v > 0))
                         for row in intensity])
    return SyntheticFaces(images, intensity, emotions, au_names, EMOTIONS)


def pixel_values_from_images(images, image_size: int | None = None):
    """``[N, 3, H, W]`` float tensor in ``[-1, 1]`` (mean 0.5, std 0.5) from uint8 ``[N, H, W, 3]`` arrays or PIL images.

    With ``image_size`` every image is first converted to RGB and resized to ``image_size`` square.
    """
    import torch

    if image_size is not None:
        from PIL import Image

        images = np.stack([np.asarray((im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)))
                                      .convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR))
                           for im in images])
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"`images` must be RGB images [N, H, W, 3], got shape {arr.shape}; pass `image_size` to convert.")
    return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------- loaders


def subject_exclusive_folds(subjects, n_folds: int = 3, shuffle: bool = False, seed: int = 0
                            ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-exclusive k-fold cross-validation, the protocol of BP4D / DISFA AU papers (3 folds).

    Every subject's frames fall in exactly one test fold, so no subject is in a fold's training and test
    parts at once. Subjects are assigned, largest first, to the fold with the fewest frames so far (ties:
    the lower fold), which balances the folds by frames; ``shuffle=True`` permutes the subjects with
    ``seed`` before the (stable) size sort, so equal-sized subjects are spread differently.

    Args:
        subjects (`Sequence`): one subject id per frame (e.g. ``dataset["subject"]`` of [`load_bp4d`]).
        n_folds (`int`): number of folds, at least 2 and at most the number of subjects.
        shuffle (`bool`), seed (`int`): see above; the default order is the sorted subject ids.

    Returns:
        `list[tuple[np.ndarray, np.ndarray]]`: ``(train_indices, test_indices)`` per fold, like scikit-learn's
        ``GroupKFold.split``.
    """
    subjects = np.asarray(list(subjects), dtype=object)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"`n_folds` must be an integer >= 2, got {n_folds!r}.")
    if len(subjects) == 0:
        raise ValueError("`subjects` is empty.")
    ids = sorted({str(s) for s in subjects})
    if len(ids) != len({s for s in subjects}):
        raise ValueError("`subjects` has distinct ids with the same string form; use one id type.")
    if n_folds > len(ids):
        raise ValueError(f"`n_folds` ({n_folds}) is larger than the number of subjects ({len(ids)}).")
    keys = np.array([str(s) for s in subjects])
    if shuffle:
        ids = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    counts = {s: int((keys == s).sum()) for s in ids}
    fold_of, sizes = {}, [0] * n_folds
    for s in sorted(ids, key=lambda s: -counts[s]):  # stable: equal sizes keep the sorted / shuffled order
        f = int(np.argmin(sizes))
        fold_of[s] = f
        sizes[f] += counts[s]
    fold = np.array([fold_of[k] for k in keys])
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_folds)]


def _image_dataset(columns: dict, image_paths: list[str]):
    import datasets

    if not image_paths:
        raise ValueError("No labelled images were found; check the root folder and the layout.")
    return datasets.Dataset.from_dict({"image": image_paths, **columns}).cast_column("image", datasets.Image())


def _index_frames(folder: Path) -> dict[int, str]:
    """``{frame number: path}`` of the images in ``folder`` whose stem ends in a number."""
    out = {}
    for p in sorted(folder.glob("*")):
        m = re.search(r"(\d+)$", p.stem)
        if m and p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"):
            out[int(m.group(1))] = str(p)
    return out


def load_disfa(root, au_names=DISFA_AUS, threshold: int = 2, image_dir: str = "Images"):
    """DISFA AU occurrence (an AU counts as present at intensity >= ``threshold``, the usual protocol).

    Layout: ``root/ActionUnit_Labels/<SN>/<SN>_au<N>.txt`` (lines ``frame,intensity``) and extracted
    frames ``root/<image_dir>/<SN>/<...frame number>.jpg``. Columns: ``image``, ``subject``, ``frame``,
    ``au_labels`` (``[K]`` floats in ``au_names`` order).
    """
    au_names = check_au_names(au_names)
    root = Path(root)
    paths, subjects, frames, labels = [], [], [], []
    for subject_dir in sorted((root / "ActionUnit_Labels").glob("*")):
        sn = subject_dir.name
        per_au = {}
        for au in au_names:
            f = subject_dir / f"{sn}_{au.lower()}.txt"
            if not f.is_file():
                raise FileNotFoundError(f"DISFA label file {f} is missing (asked for {au}).")
            per_au[au] = {int(r[0]): int(r[1]) for r in csv.reader(f.read_text().split()) if r}
        images = _index_frames(root / image_dir / sn)
        for frame in sorted(set.intersection(*(set(v) for v in per_au.values())) & set(images)):
            paths.append(images[frame])
            subjects.append(sn)
            frames.append(frame)
            labels.append([float(per_au[a][frame] >= threshold) for a in au_names])
    return _image_dataset({"subject": subjects, "frame": frames, "au_labels": labels}, paths)


def load_bp4d(root, au_names=BP4D_AUS, image_dir: str = "2DFaces"):
    """BP4D AU occurrence. Frames with an unknown label (9) in any asked AU are skipped.

    Layout: ``root/AUCoding/AU_OCC/<subject>_<task>.csv`` (header ``Frame,1,2,4,...``) and frames
    ``root/<image_dir>/<subject>/<task>/<...frame number>.jpg``. Columns: ``image``, ``subject``,
    ``task``, ``frame``, ``au_labels``.
    """
    au_names = check_au_names(au_names)
    root = Path(root)
    paths, subjects, tasks, frames, labels = [], [], [], [], []
    for f in sorted((root / "AUCoding" / "AU_OCC").glob("*.csv")):
        subject, _, task = f.stem.partition("_")
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        missing = [a for a in au_names if rows and a[2:] not in rows[0]]
        if missing:
            raise ValueError(f"{f} has no columns for {missing}.")
        images = _index_frames(root / image_dir / subject / task)
        for r in rows:
            frame, values = int(r["Frame"]), [int(r[a[2:]]) for a in au_names]
            if frame in images and 9 not in values:
                paths.append(images[frame])
                subjects.append(subject)
                tasks.append(task)
                frames.append(frame)
                labels.append([float(v) for v in values])
    return _image_dataset({"subject": subjects, "task": tasks, "frame": frames, "au_labels": labels}, paths)


def load_rafdb(root, split: str = "train", aligned: bool = True):
    """RAF-DB basic emotions (7 classes). ``split`` is ``'train'`` or ``'test'``.

    Layout: ``root/EmoLabel/list_patition_label.txt`` (lines ``train_00001.jpg 5``, labels 1..7) and
    ``root/Image/aligned/train_00001_aligned.jpg`` (or ``root/Image/original/train_00001.jpg``).
    Columns: ``image``, ``emotion`` (names as [`EMOTIONS`]).
    """
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    root = Path(root)
    paths, emotions = [], []
    for line in (root / "EmoLabel" / "list_patition_label.txt").read_text().splitlines():
        if not line.strip():
            continue
        name, label = line.split()
        if not name.startswith(split):
            continue
        stem, ext = name.rsplit(".", 1)
        path = root / "Image" / ("aligned" if aligned else "original") / (f"{stem}_aligned.{ext}" if aligned else name)
        if path.is_file():
            paths.append(str(path))
            emotions.append(RAFDB_EMOTIONS[int(label)])
    return _image_dataset({"emotion": emotions}, paths)


def load_affectnet(root, split: str = "validation", num_classes: int = 7):
    """AffectNet emotions: 7 classes (no contempt) or 8; non-emotion labels (8-10) are skipped.

    Layout: ``root/<split>.csv`` (``training`` / ``validation``) with columns ``subDirectory_filePath``
    and ``expression``, images under ``root/Manually_Annotated_Images/``. Columns: ``image``, ``emotion``.
    """
    if num_classes not in (7, 8):
        raise ValueError(f"`num_classes` must be 7 or 8, got {num_classes!r}.")
    if split not in ("training", "validation"):
        raise ValueError(f"`split` must be 'training' or 'validation', got {split!r}.")
    root = Path(root)
    paths, emotions = [], []
    with open(root / f"{split}.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            label = int(r["expression"])
            path = root / "Manually_Annotated_Images" / r["subDirectory_filePath"]
            if label < num_classes and path.is_file():
                paths.append(str(path))
                emotions.append(AFFECTNET_EMOTIONS[label])
    return _image_dataset({"emotion": emotions}, paths)


def load_mfa_json(path, image_root=None, au_names=None):
    """MFA-style multilevel descriptions from a JSON list or JSON-lines file.

    Each record: ``{"image": "relative/or/absolute.jpg", "global_description": "...",
    "au_descriptions": {"AU1": "...", ...}, "aus": {"AU1": 0 or 1, ...} (optional),
    "emotion": "happy" (optional)}``. ``au_names`` (default: the first record's AUs, in order) fixes
    the order of ``au_texts`` and ``au_labels``; every record must describe every AU.
    Columns: ``image``, ``global_text``, ``au_texts``, and ``au_labels`` / ``emotion`` when given.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8").strip()
    records = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    if not records:
        raise ValueError(f"{path} holds no records.")
    au_names = check_au_names(au_names or list(records[0]["au_descriptions"]))
    image_root = Path(image_root) if image_root is not None else path.parent
    cols: dict[str, list] = {"global_text": [], "au_texts": []}
    paths = []
    for i, r in enumerate(records):
        missing = [a for a in au_names if a not in r.get("au_descriptions", {})]
        if missing:
            raise ValueError(f"{path} record {i} has no descriptions for {missing}.")
        paths.append(str(image_root / r["image"]))
        cols["global_text"].append(r["global_description"])
        cols["au_texts"].append([r["au_descriptions"][a] for a in au_names])
        if "aus" in r:
            cols.setdefault("au_labels", []).append([float(r["aus"][a]) for a in au_names])
        if "emotion" in r:
            cols.setdefault("emotion", []).append(r["emotion"])
    for key in ("au_labels", "emotion"):
        if key in cols and len(cols[key]) != len(records):
            raise ValueError(f"{path}: some records have {key!r} and some do not.")
    return _image_dataset(cols, paths)


def face_grid(images, n: int = 16, ncols: int = 8, titles=None):
    """A matplotlib figure showing the first ``n`` images (uint8 ``[N, H, W, 3]``)."""
    import matplotlib.pyplot as plt

    n = min(n, len(images))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k])
            if titles is not None:
                ax.set_title(titles[k], fontsize=6)
    fig.tight_layout()
    return fig
