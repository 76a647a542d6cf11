"""Faces with Action Unit (AU) and emotion labels: the label vocabulary, its texts and tokenizer, and a parametric
synthetic set.

Synthetic faces ([`make_synthetic_faces`]) are drawn from known AU intensities (the drawing is
[`hfgen.data.face_rendering.render_face`]), so every label is exact: the brows carry AU1 (inner brow raiser), AU2
(outer brow raiser) and AU4 (brow lowerer, with a furrow); the eyes AU5 (upper lid raiser); the cheeks AU6 (cheek
raiser); the nose AU9 (nose wrinkler); the mouth AU12 (lip corner puller), AU15 (lip corner depressor), AU20 (lip
stretcher), AU23 (lip tightener) and AU26 (jaw drop). A face's emotion is *derived* from its AUs by the EMFACS
prototypes ([`EMOTION_PROTOTYPES`], [`emotion_from_aus`]), and every face comes with MFA-style multilevel text (MF^2,
arXiv 2504.10351): one description per AU (local level) and one emotion description (global level), templated here
in place of the paper's GPT-4o descriptions.

The loaders of the real data sets ([`hfgen.data.face_datasets`]: ``load_disfa``, ``load_bp4d``, ``load_rafdb``,
``load_affectnet``, ``load_mfa_json``, ``subject_exclusive_folds``) and the drawing and plotting
([`hfgen.data.face_rendering`]: ``render_face``, ``face_grid``) are also importable from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hfgen._lazy import lazy_exports

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
    from hfgen.data.face_rendering import render_face

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


# their own modules import this one, so they are exported here on first use
__getattr__, _ = lazy_exports(__name__, {
    **dict.fromkeys(("render_face", "face_grid"), "hfgen.data.face_rendering"),
    **dict.fromkeys(("DISFA_AUS", "BP4D_AUS", "RAFDB_EMOTIONS", "AFFECTNET_EMOTIONS", "subject_exclusive_folds",
                     "load_disfa", "load_bp4d", "load_rafdb", "load_affectnet", "load_mfa_json"),
                    "hfgen.data.face_datasets"),
})
